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


VIEWS: tuple[View, ...] = (
    View("home.py", "Overview", "Home", ":material/home:", "home", default=True),
    View("jobs.py", "Overview", "Jobs", ":material/pending_actions:", "view_jobs"),
    View("import_prompts.py", "Prompts", "Import", ":material/upload_file:", "manage_prompts"),
    View("prompts.py", "Prompts", "Prompts", ":material/list:", "manage_prompts"),
    View("generate.py", "Prompts", "Generate", ":material/psychology:", "generate"),
    View("review.py", "Review", "Review", ":material/keyboard:", "annotate"),
    View("adjudication.py", "Review", "Adjudication", ":material/gavel:", "adjudicate"),
    View("browse.py", "Review", "Browse", ":material/table:", "browse"),
    View("agreement.py", "Review", "Agreement", ":material/join_inner:", "agreement"),
    View("settings.py", "Review", "My settings", ":material/visibility_off:", "own_settings"),
    View("argilla.py", "Review", "Argilla", ":material/cloud_sync:", "manage_queues"),
    View("eval.py", "Evaluation", "Evaluate", ":material/fact_check:", "evaluate"),
    View("compare.py", "Evaluation", "Compare", ":material/compare:", "vote"),
    View("export_train.py", "Training", "Export & train", ":material/model_training:", "train"),
    View("runs.py", "Training", "Runs", ":material/monitoring:", "train"),
    View("queues.py", "Admin", "Queues", ":material/queue:", "manage_queues"),
    View("users_admin.py", "Admin", "Users", ":material/group:", "manage_users"),
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
