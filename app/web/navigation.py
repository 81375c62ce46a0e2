"""The menu, defined once: every view with its section, title, icon and the action (curation.auth.PERMISSIONS)
a user needs to open it. The sidebar, the URL router and each view's own guard all derive from this table."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

VIEWS_DIR = Path(__file__).parent / "views"


@dataclass(frozen=True)
class View:
    file: str
    section: str
    title: str
    icon: str
    action: str
    default: bool = False

    @property
    def path(self) -> Path:
        return VIEWS_DIR / self.file


# Sections in workflow order (prompts -> generate -> review -> export & train -> evaluate -> compare); the sidebar
# shows every page (no "View more"), so the order is the map of the work.
VIEWS: tuple[View, ...] = (
    View("home.py", "Overview", "Home", ":material/home:", "home", default=True),
    View("jobs.py", "Overview", "Jobs", ":material/pending_actions:", "view_jobs"),
    View("import_prompts.py", "1 · Prompts", "Import", ":material/upload_file:", "manage_prompts"),
    View("prompts.py", "1 · Prompts", "Prompts", ":material/list:", "manage_prompts"),
    View("generate.py", "2 · Generate", "Generate", ":material/psychology:", "generate"),
    View("queues.py", "3 · Review", "Queues", ":material/queue:", "manage_queues"),
    View("review.py", "3 · Review", "Review", ":material/keyboard:", "annotate"),
    View("adjudication.py", "3 · Review", "Adjudication", ":material/gavel:", "adjudicate"),
    View("browse.py", "3 · Review", "Browse", ":material/table:", "browse"),
    View("agreement.py", "3 · Review", "Agreement", ":material/join_inner:", "agreement"),
    View("argilla.py", "3 · Review", "Argilla", ":material/cloud_sync:", "manage_queues"),
    View("export_train.py", "4 · Export & train", "Export & train", ":material/model_training:", "train"),
    View("runs.py", "4 · Export & train", "Runs", ":material/monitoring:", "train"),
    View("eval.py", "5 · Evaluate", "Evaluate", ":material/fact_check:", "evaluate"),
    View("compare.py", "5 · Evaluate", "Compare", ":material/compare:", "vote"),
    View("users_admin.py", "Admin", "Users", ":material/group:", "manage_users"),
    View("settings.py", "Account", "My settings", ":material/visibility_off:", "own_settings"),
)
_BY_FILE = {v.file: v for v in VIEWS}


def view_for(file: str) -> View:
    """The view a script file belongs to (a view passes its own __file__)."""
    return _BY_FILE[Path(file).name]


def menu(role: str) -> dict[str, list[View]]:
    """Sections in order with the views this role may open; empty sections left out."""
    from curation.auth import can

    out: dict[str, list[View]] = {}
    for v in VIEWS:
        if can(role, v.action):
            out.setdefault(v.section, []).append(v)
    return out


def link_to(role: str, file: str, label: str) -> None:
    """A one-click link to another view (a next step from a result), shown only to roles that may open it."""
    import streamlit as st
    from streamlit.errors import StreamlitAPIException

    from curation.auth import can

    view = _BY_FILE[file]
    if not can(role, view.action):
        return
    try:
        st.page_link(f"views/{file}", label=label, icon=view.icon)
    except StreamlitAPIException:  # a view run on its own, outside the app's navigation (AppTest of one page)
        st.caption(f"{label}: the {view.title} page")
