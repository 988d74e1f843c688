"""The document-driven suite checks itself: its copy of the documents is the project's, and its
checker fails when an answer renames a documented field."""

from __future__ import annotations

import copy

import pytest
from documents import (
    SEED_FILES,
    SEEDS,
    SHARED_SEEDS,
    declared_extras,
    hdredraw,
    shape_differences,
    taskpic,
)
from documents import tencent as tencent_doc

pytestmark = pytest.mark.integration


@pytest.mark.skipif(not SHARED_SEEDS.is_dir(), reason="no ../shared/seeds beside this clone (CI)")
@pytest.mark.parametrize("name", [*SEED_FILES, "README.md"])
def test_vendored_seed_is_byte_for_byte_the_shared_one(name):
    assert (SEEDS / name).read_bytes() == (SHARED_SEEDS / name).read_bytes()


def test_the_five_seed_documents_are_vendored():
    assert sorted(p.name for p in SEEDS.glob("*.txt")) == sorted(SEED_FILES)


def renamed(answer, path: str, new: str):
    """A deep copy of `answer` with the field at dotted `path` renamed to `new`."""
    changed = copy.deepcopy(answer)
    *parents, last = path.split(".")
    holder = changed
    for key in parents:
        holder = holder[key]
    holder[new] = holder.pop(last)
    return changed


def fields_of(example, prefix=""):
    for key, value in example.items():
        name = f"{prefix}.{key}" if prefix else key
        yield name
        if isinstance(value, dict):
            yield from fields_of(value, name)


def assert_matches(example, answer):
    problems = shape_differences(example, answer)
    assert problems == [], problems


# ---- a real answer of the mock, renamed in a copy, must fail -------------------------------
@pytest.fixture
def answers(client, tencent):
    """One real answer per provider: the documents' own example requests, sent to the mock."""
    seg = taskpic("segmentation")
    fields = dict(seg.example_request)
    url = fields.pop("image_url")
    taskpic_answer = client.post(
        seg.path, headers={"Authorization": "Bearer sk-xxxx"}, data=fields, files={"image_url": (None, url)}
    ).json()
    hd = hdredraw()
    face = client.post(
        "/api/submit_face_enhance_task",
        data=hd["/api/submit_face_enhance_task"].example_data,
        files={"input_image": ("a.png", (SEEDS.parent / "samples" / "image.png").read_bytes())},
    ).json()
    hd_status = client.post(
        "/api/check_task_status", data={"user_key": "test-key", "task_id": face["task_id"]}
    ).json()
    doc = tencent_doc()
    return {
        "taskpic": (seg.example_answer, taskpic_answer),
        "hd": (hd["/api/check_task_status"].answer, hd_status),
        "tencent": (doc.example_output, tencent(doc.example_input, action=doc.action, version=doc.version)),
    }


def test_the_unchanged_answers_match_their_documents(answers):
    for example, answer in answers.values():
        assert_matches(example, answer)


CASES = [
    (provider, field)
    for provider, example in (
        ("taskpic", taskpic("segmentation").example_answer),
        ("hd", hdredraw()["/api/check_task_status"].answer),
        ("tencent", tencent_doc().example_output),
    )
    for field in fields_of(example)
]


@pytest.mark.parametrize(("provider", "field"), CASES)
def test_renaming_a_documented_field_in_a_copy_of_the_answer_fails_the_checker(answers, provider, field):
    example, answer = answers[provider]
    broken = renamed(answer, field, field.rsplit(".", 1)[-1] + "_renamed")
    with pytest.raises(AssertionError) as failed:
        assert_matches(example, broken)
    assert field in str(failed.value)


def test_a_changed_type_fails_the_checker(answers):
    example, answer = answers["taskpic"]
    broken = copy.deepcopy(answer)
    broken["data"]["state"] = str(broken["data"]["state"])
    with pytest.raises(AssertionError, match=r"data\.state"):
        assert_matches(example, broken)


def test_the_readme_declares_the_fields_the_documents_lack():
    assert "data.mask" in declared_extras()
