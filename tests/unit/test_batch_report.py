"""The batch Report settles items whose child execution ended outside their jobs (moto's Step
Functions: an execution starts RUNNING, FAILED with SF_EXECUTION_HISTORY_TYPE=FAILURE, ABORTED
once stopped), and GET /batches reads an ended batch's summary from the results' metadata."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from picflow.batch.pipeline import PIPELINE
from picflow.batch.report import finished_summary, report
from picflow.core.names import items_key, results_key

ROLE = "arn:aws:iam::123456789012:role/picflow-test"
DEFINITION = json.dumps({"StartAt": "P", "States": {"P": {"Type": "Pass", "End": True}}})


@pytest.fixture
def output(s3: Any, monkeypatch: pytest.MonkeyPatch) -> str:
    s3.create_bucket(Bucket="outputs")
    monkeypatch.setenv("PICFLOW_OUTPUT_BUCKET", "outputs")
    return "outputs"


def _machine(sfn: Any, name: str) -> str:
    arn: str = sfn.create_state_machine(name=name, definition=DEFINITION, roleArn=ROLE)["stateMachineArn"]
    return arn


def _execution(sfn: Any, monkeypatch: pytest.MonkeyPatch, machine: str, name: str, ends: str) -> None:
    """An execution ``name`` of ``machine`` that is RUNNING, FAILED or ABORTED."""
    monkeypatch.setenv("SF_EXECUTION_HISTORY_TYPE", "FAILURE" if ends == "FAILED" else "SUCCESS")
    arn = sfn.start_execution(stateMachineArn=machine, name=name, input="{}")["executionArn"]
    monkeypatch.delenv("SF_EXECUTION_HISTORY_TYPE")
    if ends == "ABORTED":
        sfn.stop_execution(executionArn=arn, error="Cancelled")
    assert sfn.describe_execution(executionArn=arn)["status"] == ends


def _batch(
    s3: Any, table: Any, bucket: str, batch_id: str, total: int, records: list[dict[str, Any]]
) -> None:
    items = [{"i": i, "bucket": "in", "key": f"{i}.png", "params": {}} for i in range(total)]
    s3.put_object(Bucket=bucket, Key=items_key(batch_id), Body=json.dumps(items).encode())
    for record in records:
        table.put_item(Item={"batch_id": batch_id, **record})


def _describes(sfn: Any) -> list[str]:
    """The executions the client is asked to describe, from here on."""
    asked: list[str] = []
    sfn.meta.events.register(
        "provide-client-params.sfn.DescribeExecution",
        lambda params, **_: asked.append(params["executionArn"]),
    )
    return asked


def test_report_settles_pipeline_items_whose_execution_ended_between_steps(
    s3: Any, sfn: Any, jobs_table: Any, output: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a pipeline batch of five items once its map has ended:
    #   0 done; 1 and 2 between steps, their pipelines failed / aborted outside a job (2's
    #   background record left RUNNING); 3 between steps, its pipeline still running; 4 no job
    pipelines = _machine(sfn, "pipeline")
    done = [{"job_id": f"b-0-{s}", "status": "SUCCEEDED"} for s in ("cutout", "background", "upscale")]
    records = [
        *done,
        {"job_id": "b-1-cutout", "status": "SUCCEEDED"},
        {"job_id": "b-2-cutout", "status": "SUCCEEDED"},
        {"job_id": "b-2-background", "status": "RUNNING"},
        {"job_id": "b-3-cutout", "status": "SUCCEEDED"},
    ]
    _batch(s3, jobs_table, output, "b", 5, records)
    for name, ends in (("b-1", "FAILED"), ("b-2", "ABORTED"), ("b-3", "RUNNING")):
        _execution(sfn, monkeypatch, pipelines, name, ends)
    asked = _describes(sfn)

    # WHEN the Report runs
    summary = report(
        {"batch_id": "b", "pipeline": True},
        s3=s3,
        table=jobs_table,
        sfn=sfn,
        state_machines={
            "job": "arn:aws:states:us-east-1:123456789012:stateMachine:jobs",
            PIPELINE: pipelines,
        },
    )

    # THEN the ended ones are FAILED / CANCELLED with an error saying so, the running one is left
    # RUNNING, and only the three items not final were asked about
    body = s3.get_object(Bucket=output, Key=results_key("b"))["Body"].read().decode()
    lines = [json.loads(line) for line in body.splitlines()]
    assert [line["status"] for line in lines] == [
        "SUCCEEDED",
        "FAILED",
        "CANCELLED",
        "RUNNING",
        "NOT_STARTED",
    ]
    for line, ended in ((lines[1], "FAILED"), (lines[2], "ABORTED")):
        assert line["error"]["type"] == "ExecutionEnded"
        assert line["error"]["message"].startswith(f"the pipeline execution b-{line['index']} ended {ended}")
        assert line["error"]["message"].endswith("without finishing its jobs")
        assert line["outputs"] == []
    assert lines[2]["steps"] == ["b-2-cutout", "b-2-background"]
    assert (lines[0]["error"], lines[3]["error"]) == (None, None)
    assert sorted(a.rpartition(":")[2] for a in asked) == ["b-1", "b-2", "b-3"]
    counts = summary["counts"]
    assert (counts["SUCCEEDED"], counts["FAILED"], counts["CANCELLED"]) == (1, 1, 1)
    assert (counts["RUNNING"], counts["NOT_STARTED"], summary["done"]) == (1, 1, 3)


def test_report_settles_a_job_item_whose_execution_was_stopped_outside_its_states(
    s3: Any, sfn: Any, jobs_table: Any, output: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    jobs = _machine(sfn, "jobs")
    _batch(
        s3,
        jobs_table,
        output,
        "b",
        2,
        [{"job_id": "b-0", "status": "SUCCEEDED"}, {"job_id": "b-1", "status": "RUNNING"}],
    )
    _execution(sfn, monkeypatch, jobs, "b-1", "ABORTED")
    asked = _describes(sfn)

    summary = report(
        {"batch_id": "b"}, s3=s3, table=jobs_table, sfn=sfn, state_machines={"job": jobs, PIPELINE: "unused"}
    )

    assert [a.rpartition(":")[2] for a in asked] == ["b-1"]
    assert (summary["counts"]["SUCCEEDED"], summary["counts"]["CANCELLED"], summary["done"]) == (1, 1, 2)
    line = json.loads(
        s3.get_object(Bucket=output, Key=results_key("b"))["Body"].read().decode().splitlines()[1]
    )
    # moto keeps no stop error; AWS's would follow ABORTED in brackets
    assert line["error"]["message"] == "the job execution b-1 ended ABORTED without finishing its job"


def test_an_ended_batchs_summary_is_read_from_the_results_metadata(
    s3: Any, jobs_table: Any, output: str
) -> None:
    # GIVEN a Report written for a batch whose map then failed (a Fail state: no output)
    _batch(
        s3,
        jobs_table,
        output,
        "b",
        2,
        [{"job_id": "b-0", "status": "FAILED"}, {"job_id": "b-1", "status": "SUCCEEDED"}],
    )
    summary = report({"batch_id": "b"}, s3=s3, table=jobs_table)
    metadata = s3.head_object(Bucket=output, Key=results_key("b"))["Metadata"]

    # THEN GET /batches reads it from there once the batch has ended, never while it runs
    expected = {k: summary[k] for k in ("total", "counts", "done", "progress", "reused", "cost")}
    assert finished_summary({"status": "FAILED"}, metadata) == expected
    assert finished_summary({"status": "RUNNING"}, metadata) is None
    assert finished_summary({"status": "FAILED"}, {}) is None
    assert finished_summary({"status": "FAILED"}, {"summary": "{not json"}) is None


def test_report_may_ask_step_functions_about_job_and_pipeline_executions(
    template_resources: dict[str, Any],
) -> None:
    # moto does not enforce IAM: without this grant the Report would fail only in AWS.
    statements = [
        s
        for p in template_resources["BatchFunction"]["Properties"]["Policies"]
        if "Statement" in p
        for s in p["Statement"]
    ]
    described = [json.dumps(s["Resource"]) for s in statements if "states:DescribeExecution" in s["Action"]]
    assert any("JobStateMachine.Name" in r and "PipelineStateMachine.Name" in r for r in described)
    asl = json.loads((Path(__file__).resolve().parents[2] / "statemachine" / "batch.asl.json").read_text())
    assert asl["States"]["Report"]["Parameters"]["state_machines"] == {
        "job": "${JobStateMachineArn}",
        PIPELINE: "${PipelineStateMachineArn}",
    }
