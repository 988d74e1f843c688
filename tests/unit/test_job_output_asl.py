"""statemachine/job.asl.json: every way a job succeeds hands its parent the fields the parent reads.

A batch's map and the pipeline start jobs with ``startExecution.sync:2`` and read fields of the
job's output (``$.Output.<field>``). On AWS a missing field is ``States.Runtime``, which no
``States.ALL`` catches. The fields read are taken from pipeline.asl.json and batch.asl.json (the
layer reads job records, never a job's output: only a batch's and a pipeline's). The job
machine is then walked from StartAt, path by path (loops once), tracking which JSON paths each
state's input surely has, and every state that ends the execution successfully is checked: its
output has every field read, and each ``$.`` path its Parameters read exists on every path
reaching it.

What the Lambda functions return is taken from the layer where it is one function call
(``job_output``, ``_result``) and modelled here otherwise (Validate, Submit: see ``_task_result``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from picflow.job.collect import job_result
from picflow.job.finish import job_output

ROOT = Path(__file__).resolve().parents[2]
ASL = {
    name: json.loads((ROOT / "statemachine" / f"{name}.asl.json").read_text())
    for name in ("job", "pipeline", "batch")
}
JOB_MACHINE = "${JobStateMachineArn}"
START_SYNC = re.compile(r"^arn:aws:states:::states:startExecution\.sync(:2)?$")
OUTPUT_FIELD = re.compile(r"^\$\.Output\.([A-Za-z0-9_]+)")


def _states(machine: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for state in machine["States"].values():
        yield state
        for inner in (state.get("ItemProcessor"), state.get("Iterator"), *state.get("Branches", [])):
            if inner is not None:
                yield from _states(inner)


def _strings(node: Any) -> Iterator[str]:
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for value in node.values():
            yield from _strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from _strings(value)


def fields_read_from_a_job() -> set[str]:
    """Every ``$.Output.<field>`` a state starting a job (and waiting for it) reads."""
    read: set[str] = set()
    for name in ("pipeline", "batch"):
        for state in _states(ASL[name]):
            if not START_SYNC.match(str(state.get("Resource", ""))):
                continue
            if (state.get("Parameters") or {}).get("StateMachineArn") != JOB_MACHINE:
                continue  # a pipeline item: its output is the pipeline's, not a job's
            read |= {m.group(1) for s in _strings(state) if (m := OUTPUT_FIELD.match(s))}
    return read


# --- the walk ------------------------------------------------------------------------------
# A shape: the JSON paths ("a.b.c") an input surely has, each with its string value when known
# (Choice rules narrow on it) or None. OPAQUE: present, and what lies below is unknown; the
# path "" is the value itself (a task answer nothing is known about: {"": OPAQUE}).

OPAQUE = "<opaque>"
Shape = dict[str, str | None]


def _present(shape: Shape, path: str) -> bool | None:
    """True: surely there; False: surely not; None: below something opaque, so unknown."""
    if path in shape:
        return True
    parts = path.split(".")
    if any(shape.get(".".join(parts[:i])) == OPAQUE for i in range(len(parts))):
        return None
    return False


def _under(prefix: str, shape: Shape) -> Shape:
    out: Shape = {}
    parts = prefix.split(".")
    for i in range(1, len(parts)):
        out[".".join(parts[:i])] = None
    out[prefix] = shape.get("")
    out.update({f"{prefix}.{path}": value for path, value in shape.items() if path})
    return out


def _sub(shape: Shape, path: str) -> Shape:
    if path == "":
        return dict(shape)
    if shape.get(path) == OPAQUE:
        return {}  # nothing known below; the parent is marked opaque by the caller
    return {p.removeprefix(path + "."): v for p, v in shape.items() if p.startswith(path + ".")}


def _json_path(ref: str) -> str:
    assert re.fullmatch(r"\$(\.[A-Za-z0-9_]+)*", ref), f"the walk reads only plain paths: {ref}"
    return ref.removeprefix("$").removeprefix(".")


class Walk:
    def __init__(self, machine: dict[str, Any]) -> None:
        self.states: dict[str, dict[str, Any]] = machine["States"]
        self.start: str = machine["StartAt"]
        self.missing: list[str] = []  # "<state>: reads <path>, absent on a path reaching it"
        self.ends: dict[str, list[Shape]] = {}  # terminal success state -> outputs seen
        self.entered: set[str] = set()

    def template(self, node: Any, given: Shape, where: str, strict: bool) -> Shape:
        """The shape of a Parameters/ResultSelector template evaluated against ``given``."""
        out: Shape = {}
        for key, value in node.items():
            if key.endswith(".$"):
                name, ref = key.removesuffix(".$"), str(value)
                if ref.startswith(("$$.", "States.")):
                    out[name] = None
                    continue
                path = _json_path(ref)
                present = _present(given, path) if path else True
                if present is False and strict:
                    self.missing.append(f"{where}: {name} reads {ref}, absent on a path reaching it")
                below = _sub(given, path)
                opaque = present is None or given.get(path) == OPAQUE
                out[name] = OPAQUE if opaque else (given.get(path) if path and not below else None)
                out.update({f"{name}.{p}": v for p, v in below.items()})
            elif isinstance(value, dict):
                out.update(_under(key, self.template(value, given, where, strict)))
            else:
                out[key] = value if isinstance(value, str) else None
        return out

    def result_path(
        self, given: Shape, result: Shape, state: dict[str, Any], key: str = "ResultPath"
    ) -> Shape:
        if key in state and state[key] is None:
            return dict(given)  # ResultPath null: the input goes on unchanged
        path = _json_path(str(state.get(key, "$")))
        if not path:
            return result
        kept = {p: v for p, v in given.items() if p != path and not p.startswith(path + ".")}
        return kept | _under(path, result)

    def run(self) -> None:
        seen: set[tuple[str, tuple[tuple[str, str | None], ...]]] = set()
        todo: list[tuple[str, Shape]] = [(self.start, {"": OPAQUE})]  # the execution input
        while todo:
            name, shape = todo.pop()
            key = (name, tuple(sorted(shape.items())))
            if key in seen:
                continue
            seen.add(key)
            self.entered.add(name)
            todo += self.step(name, self.states[name], shape)

    def step(self, name: str, state: dict[str, Any], given: Shape) -> list[tuple[str, Shape]]:
        kind = state["Type"]
        assert "InputPath" not in state, f"{name}: extend the walk"
        assert "OutputPath" not in state, f"{name}: extend the walk"
        nexts: list[tuple[str, Shape]] = []
        if kind == "Choice":
            return self.choose(state, given)
        if kind in ("Fail",):
            return []
        if kind == "Succeed":
            self.ends.setdefault(name, []).append(given)
            return []
        if kind == "Wait":
            out = dict(given)
        elif kind == "Pass":
            if "Parameters" in state:
                result = self.template(state["Parameters"], given, name, strict=state.get("End") is True)
            else:
                result = dict(given)
            out = self.result_path(given, result, state)
        elif kind == "Task":
            self.template(state.get("Parameters") or {}, given, name, strict=False)
            outs = []
            for raw in _task_result(name, state, given):
                selected = raw
                if "ResultSelector" in state:
                    selected = self.template(state["ResultSelector"], raw, name, strict=False)
                outs.append(self.result_path(given, selected, state))
            for catcher in state.get("Catch", []):
                caught = self.result_path(given, {"Error": None, "Cause": None}, catcher)
                nexts.append((catcher["Next"], caught))
            if state.get("End"):
                self.ends.setdefault(name, []).extend(outs)
                return nexts
            return nexts + [(state["Next"], out) for out in outs]
        else:
            raise AssertionError(f"{name}: a {kind} state; extend the walk")
        if state.get("End"):
            self.ends.setdefault(name, []).append(out)
            return nexts
        return [*nexts, (state["Next"], out)]

    def choose(self, state: dict[str, Any], given: Shape) -> list[tuple[str, Shape]]:
        """The branches this input can take (an unknown rule result: both ways)."""
        out: list[tuple[str, Shape]] = []
        for choice in state["Choices"]:
            verdict = _rule(choice, given)
            if verdict is not False:
                out.append((choice["Next"], given))
            if verdict is True:
                return out
        assert "Default" in state, "a Choice without Default fails when nothing matches"
        return [*out, (state["Default"], given)]


def _rule(rule: dict[str, Any], given: Shape) -> bool | None:
    if "And" in rule:
        verdicts = [_rule(r, given) for r in rule["And"]]
        return False if False in verdicts else (None if None in verdicts else True)
    if "Not" in rule:
        verdict = _rule(rule["Not"], given)
        return None if verdict is None else not verdict
    path = _json_path(rule["Variable"])
    present = _present(given, path)
    if "IsPresent" in rule:
        return None if present is None else present == rule["IsPresent"]
    if "StringEquals" in rule and present is True and given[path] not in (None, OPAQUE):
        return given[path] == rule["StringEquals"]
    return False if present is False else None


def _keys(value: dict[str, Any]) -> Shape:
    return dict.fromkeys(value, None)


def _task_result(name: str, state: dict[str, Any], given: Shape) -> list[Shape]:
    """What a Task hands back (before ResultSelector), one shape per way it can answer."""
    resource = state["Resource"]
    parameters = state.get("Parameters") or {}
    # picflow.job.collect.job_result: what Collect and Reuse return, and a sync Submit merges in.
    outcome = _keys(job_result("m", [], reused=False))
    if resource == "${ValidateFunctionArn}" and parameters.get("action") == "twin":
        return [given | {"cache": OPAQUE, "slot": OPAQUE}]  # await_twin: {**state, cache, slot}
    if resource == "${ValidateFunctionArn}":
        # picflow.job.validate: the job to run (out + _cache_or_slot), or _paused's answer.
        ran = ("job_id", "execution_id", "operation", "notify_url", "out_prefix", "reuse")
        opaque = ("params", "input", "job", "cache", "slot")
        return [
            dict.fromkeys(ran, None) | dict.fromkeys(opaque, OPAQUE),
            {"job_id": None, "batch_id": None, "paused": None, "error": OPAQUE},
        ]
    if resource == "${CollectFunctionArn}":
        return [outcome]
    if resource == "${NotifyFunctionArn}":
        # functions/notify: picflow.job.finish.notify, the job's record as job_output plus the notice.
        return [_keys(job_output({"job_id": "j"})) | {"notified": OPAQUE}]
    if resource == "${FinalizeFunctionArn}":
        return [{"error": OPAQUE}]
    if resource == "${SlotFunctionArn}":
        return [{"": OPAQUE}]
    if resource == "arn:aws:states:::lambda:invoke" and parameters["Payload"].get("step") == "submit":
        # picflow.job.submit: collected in this call (sync), a task to follow, or throttled.
        answers: list[Shape] = [
            {"state": "collected", "task_id": None} | outcome,
            {"state": "pending", "task_id": None, "wait_seconds": None},
            {"state": "throttled", "wait_seconds": None, "reason": None},
        ]
        return [_under("Payload", a) for a in answers]
    if resource.startswith("arn:aws:states:::lambda:invoke"):
        # Check's answer (ResultSelector names its fields), or what the callback sent.
        return [{"Payload": OPAQUE}] if resource.endswith(":invoke") else [{"": OPAQUE}]
    raise AssertionError(f"{name}: {resource}; model what it returns")


# --- the tests -----------------------------------------------------------------------------


def _walk() -> Walk:
    walk = Walk(ASL["job"])
    walk.run()
    return walk


def test_fields_read_from_a_job_are_found_in_the_parents() -> None:
    # The derivation sees both parents: the map reads reused, the pipeline primary_key & co.
    assert {"job_id", "reused", "primary_key", "manifest_key", "output_bucket", "paused"} <= (
        fields_read_from_a_job()
    )


def test_walk_enters_every_state_and_ends_in_every_success_state() -> None:
    walk = _walk()

    assert walk.entered == set(ASL["job"]["States"])
    ending = {n for n, s in ASL["job"]["States"].items() if s.get("End") or s["Type"] == "Succeed"}
    assert set(walk.ends) == ending
    assert {"Notify", "Paused", "NoticeLostCollected", "NoticeLostSync"} <= ending


def test_every_successful_end_outputs_every_field_a_parent_reads() -> None:
    read = fields_read_from_a_job()

    walk = _walk()

    for name, outputs in walk.ends.items():
        for output in outputs:
            assert read <= set(output), f"{name} lacks {sorted(read - set(output))}"


def test_every_path_read_by_a_successful_end_exists_on_every_path_reaching_it() -> None:
    walk = _walk()

    assert walk.missing == []


def test_walk_notices_an_end_reading_a_result_one_path_lacks() -> None:
    # GIVEN the pre-fix NoticeLost shape: a Pass reading $.result, reached from a sync Submit too
    machine = json.loads(json.dumps(ASL["job"]))
    states = machine["States"]
    states["NoticeLost"] = states.pop("NoticeLostCollected")
    states.pop("NoticeLostSync")

    walk = Walk(machine)
    walk.run()

    assert any(m.startswith("NoticeLost: reused reads $.result.reused") for m in walk.missing)
