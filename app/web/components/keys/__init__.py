"""A tiny keyboard component: single keys click Streamlit buttons (found by their `key`).

It installs one keydown listener on the app's document (the component's iframe is same-origin) and keeps a
key -> button map there, updated on every rerun. Keys typed into inputs and text areas are left alone, except
Ctrl/Cmd+Enter and Escape, so annotators can type edits freely (inside a form's text box Ctrl+Enter is left to
Streamlit, which submits the form). The maintained PyPI `streamlit-shortcuts` does
not skip text fields (typing "a" in an edit box would approve), hence this small one.
"""
from __future__ import annotations

import json

import streamlit.components.v1 as components

# The listener is created in the app document's own realm (a <script> element added there), not in this
# component's iframe: Streamlit remounts the iframe when the page layout shifts, and a listener that belongs to a
# removed iframe silently stops running.
_LISTENER = r"""
(function () {
  const w = window, doc = document;
  if (w.__rsKeysInstalled) return;
  w.__rsKeysInstalled = true;
  const press = (btnKey) => {
    const el = doc.querySelector('.st-key-' + btnKey + ' button');
    if (!el || el.disabled) return false;
    const a = doc.activeElement;
    w.__rsLastKeyAt = performance.now();
    if (a && (a.tagName === 'TEXTAREA' || a.tagName === 'INPUT')) {
      a.blur();  // commits the field's value to Streamlit before the click reruns the script
      setTimeout(() => el.click(), 60);
    } else {
      el.click();
    }
    return true;
  };
  doc.addEventListener('keydown', (e) => {
    const map = JSON.parse(w.__rsKeyMapJson || '{}');
    const t = e.target;
    const typing = t && (t.tagName === 'TEXTAREA' || t.tagName === 'INPUT' || t.tagName === 'SELECT'
                         || t.isContentEditable);
    let name = e.key;
    if ((e.ctrlKey || e.metaKey) && e.key === 'Enter') name = 'ctrl+enter';
    else if (e.key === 'Escape') name = 'escape';
    else if (typing || e.ctrlKey || e.metaKey || e.altKey) return;
    // In a form's text box Ctrl+Enter is Streamlit's own submit: the values and the click in one rerun.
    if (name === 'ctrl+enter' && typing && t.closest('[data-testid="stForm"]')) {
      w.__rsLastKeyAt = performance.now();
      return;
    }
    const target = map[name];
    if (target && press(target)) { e.preventDefault(); e.stopPropagation(); }
  }, true);
})();
"""

_JS = """<script>
(function () {
  const w = window.parent, doc = w.document;
  w.__rsKeyMapJson = %(map)s;
  if (!w.__rsKeysInstalled) {
    const s = doc.createElement('script');
    s.textContent = %(listener)s;
    doc.head.appendChild(s);
  }
  const scrollToken = %(scroll)s;
  if (scrollToken !== null && w.__rsScrollToken !== scrollToken) {
    // A new item starts at the top of the viewport, wherever the previous one left the page scrolled.
    w.__rsScrollToken = scrollToken;
    w.scrollTo(0, 0);
    doc.querySelectorAll('[data-testid="stMain"], [data-testid="stAppViewContainer"], section.main')
       .forEach((el) => { el.scrollTop = 0; });
  }
  const focusKey = %(focus)s;
  if (focusKey) {
    let tries = 0;
    const focus = () => {
      const el = doc.querySelector('.st-key-' + focusKey + ' textarea');
      if (el) { el.focus(); el.setSelectionRange(el.value.length, el.value.length); }
      else if (tries++ < 40) setTimeout(focus, 50);
    };
    focus();
  }
})();
</script>"""


def keyboard_shortcuts(mapping: dict[str, str], *, focus: str | None = None, scroll_top: str | None = None) -> None:
    """mapping: key ("a", "1", "?", "escape", "ctrl+enter") -> the `key` of an st.button on this page.
    focus: the key of a text area to put the cursor in (edit mode).
    scroll_top: the shown item's identity; when it changes, the page scrolls back to the top."""
    html = _JS % {"map": json.dumps(json.dumps(mapping)), "focus": json.dumps(focus), "scroll": json.dumps(scroll_top),
                  "listener": json.dumps(_LISTENER)}
    components.html(html, height=0, width=0)
