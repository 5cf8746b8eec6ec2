"""One self-tuning climb for all partitioned workers: evidence and promotions through the delta log.

Why: with partitioned state each worker scores its blend's challengers only on its own users'
events, so a worker of two needs twice the stream to gather the evidence of one worker, and the
workers climb apart (two served weightings, each on half the evidence). The tuner's evidence is a
set of sums per arm (reward, its square, its product with the served reward), so it is additive
like the item-side counts, and it travels the same way: each worker writes its sums since the
last delta to the item delta log (key ``tuner``, beside the item delta, in the same transaction),
and every worker adds the others' sums as it reads them. Every worker thus tests on the events of
all, and promotes as soon as the sum is significant.

Which promotion wins: each record also carries the writer's climb (its promotions so far). The
climb the log holds is the first record's that extends it; a worker whose own climb does not
extend the log's (it promoted something else at the same step, or it is behind) takes the log's.
Every worker reads the same log in the same order, so all of them end on the same climb, whoever
promoted first. Evidence is added only when the writer scored the same arms (same climb step and
served weighting); what was scored for a superseded weighting is dropped. The choice stays in
each worker's checkpoint (the tuner's state), with the climb the log had confirmed by then
(``Tuner.confirmed``): after a restart the log is read again from the checkpoint's position
against that confirmed climb, so a step this worker took but had not yet announced is not taken
as agreed (another worker's step at the same place, logged first, still wins).

>>> from streamrec.streams.tuner import Tuner, TunerConfig
>>> class Model:
...     def set_weights(self, **w): self.w = w
>>> a, b = Tuner(TunerConfig(learned=False), {"cooccur": 1.0}), Tuner(TunerConfig(learned=False), {"cooccur": 1.0})
>>> ca, cb = SharedClimb(a), SharedClimb(b)
>>> a.promotions.append({"arm": "cooccur*2", "weights": {"cooccur": 2.0}})   # a promoted, b did not
>>> log = [(0, ca.record()), (1, cb.record())]
>>> for writer, record in log:
...     cb.read(Model(), record, own=writer == 1)
>>> b.weights, cb.climb_length
({'cooccur': 2.0}, 1)
"""

from __future__ import annotations

#: the key of the tuner's records in the item delta log (item deltas have an empty key)
TUNER_KEY = b"tuner"


def _key(promotion: dict) -> tuple:
    """A promotion as what it served (the arm's name and the step's statistics may differ)."""
    return tuple(sorted((k, float(v)) for k, v in promotion["weights"].items()))


class SharedClimb:
    """One worker's side of the climb that the partitioned workers share."""

    def __init__(self, tuner):
        self.tuner = tuner
        tuner.share()
        if tuner.confirmed is None:  # a state written before the confirmed climb was kept
            tuner.confirmed = [dict(p) for p in tuner.promotions]
        self._announced: list | None = None  # the climb of this worker's last record

    @property
    def log(self) -> list[dict]:
        """The climb the log holds, as read so far (kept in the tuner's state: ``confirmed``)."""
        return self.tuner.confirmed

    @property
    def climb_length(self) -> int:
        return len(self.log)

    def record(self) -> dict | None:
        """What this worker adds to the log now (None: nothing new since the last record)."""
        evidence, climb = self.tuner.take_evidence(), [_key(p) for p in self.tuner.promotions]
        if evidence is None and climb == self._announced:
            return None
        self._announced = climb
        return {"climb": self.tuner.promotions, "evidence": evidence}

    def read(self, model, record: dict, own: bool) -> None:
        """A record of the log, in log order (``own``: this worker wrote it; its evidence is in)."""
        climb, log = record.get("climb") or [], [_key(p) for p in self.log]
        keys = [_key(p) for p in climb]
        if len(keys) > len(log) and keys[: len(log)] == log:
            self.tuner.confirmed = [dict(p) for p in climb]
            log = keys
        mine = [_key(p) for p in self.tuner.promotions]
        if log and mine[: len(log)] != log:  # behind the log's climb, or off it
            self.tuner.adopt(model, self.log)
        evidence = record.get("evidence")
        if not own and evidence:
            self.tuner.add_evidence(model, evidence)
