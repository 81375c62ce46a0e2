"""Judges and auto-labels: machine suggestions for reviewers, never final decisions.

Per trace: two refusal judges (GCG substring list; XSTest-style prefix rules), a decision label
(refuse | comply | partial), a reasoning/answer consistency check, format and length checks, "matches expected
behaviour", and the auto-approve candidate flag (parse ok + consistent + matching: the rejection sampling STAR-1 and
RealSafe-R1 use). An optional LLM judge applies the CoCoNot refusal rubric through any backend.
"""
