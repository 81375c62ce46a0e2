"""The table models, one module per area. Importing this package registers every table with SQLModel.metadata."""
from db.models.accounts import LoginAttempt, Project, User, UserSession
from db.models.argilla import ARGILLA_OUTCOMES, ArgillaDataset, ArgillaRecord, ArgillaResponse
from db.models.base import utcnow
from db.models.evaluation import VOTE_CHOICES, EvalLabel, EvalOutput, EvalRun, PairVote
from db.models.generation import AutoLabel, Demo, GenerationRun, TemplateVersion, Trace
from db.models.jobs import Job
from db.models.judges import JudgeVersion
from db.models.prompts import Prompt, PromptImport, PromptSet
from db.models.review import (
                              ANNOTATION_SOURCES,
                              Annotation,
                              AuditEvent,
                              Claim,
                              Queue,
                              QueueItem,
                              QueueMember,
                              UserSetting,
)
from db.models.training import (
                              EXPORT_KINDS,
                              EXPORT_STATUSES,
                              TRAINING_METHODS,
                              ExportItem,
                              ExportSnapshot,
                              TrainingCheckpoint,
                              TrainingMetric,
                              TrainingRun,
)

__all__ = [
    "ANNOTATION_SOURCES", "ARGILLA_OUTCOMES", "EXPORT_KINDS", "EXPORT_STATUSES", "TRAINING_METHODS", "VOTE_CHOICES",
    "Annotation", "ArgillaDataset", "ArgillaRecord", "ArgillaResponse", "AuditEvent", "AutoLabel", "Claim", "Demo",
    "EvalLabel", "EvalOutput", "EvalRun", "ExportItem", "ExportSnapshot", "GenerationRun", "Job", "JudgeVersion",
    "LoginAttempt", "PairVote",
    "Project", "Prompt", "PromptImport", "PromptSet", "Queue", "QueueItem", "QueueMember", "TemplateVersion",
    "Trace", "TrainingCheckpoint", "TrainingMetric", "TrainingRun", "User", "UserSession", "UserSetting", "utcnow",
]
