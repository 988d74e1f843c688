"""The provider documents, read at test time: parameter tables, example requests, example answers.

The five seed files (mock_upstream/seeds/, byte for byte the project's shared/seeds/) are the
only source of truth here: nothing below restates what the mock does. Each reader returns
plain data taken out of the document's text; `shape_differences` compares an answer with a
document's example answer field by field.
"""

from __future__ import annotations

import ast
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SEEDS = Path(__file__).resolve().parents[2] / "mock_upstream" / "seeds"
SHARED_SEEDS = Path(__file__).resolve().parents[3] / "shared" / "seeds"
TASKPIC_DOCS = {
    "background": "000_5ae6c96755b50f0b.txt",
    "segmentation": "001_0bbcaf9f16eff200.txt",
    "idphoto": "002_04c4a096d5081b09.txt",
}
TENCENT_DOC = "003_9729169f37b61316.txt"
HD_DOC = "004_ab2ed2c4a78d8f62.txt"
SEED_FILES = (*TASKPIC_DOCS.values(), TENCENT_DOC, HD_DOC)


def text(name: str) -> str:
    return (SEEDS / name).read_text(encoding="utf-8")


def json_after(doc: str, marker: str, start: int = 0) -> Any:
    """The first JSON object after `marker` (braces matched; the documents put prose around it)."""
    at = doc.index(marker, start)
    begin = doc.index("{", at)
    depth = 0
    in_string = False
    escaped = False
    for index in range(begin, len(doc)):
        char = doc[index]
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
            if depth == 0:
                return json.loads(doc[begin : index + 1])
    raise ValueError(f"unbalanced JSON after {marker!r}")


@dataclass(frozen=True)
class Param:
    name: str
    type: str
    required: bool | None  # None: the document's table lost its 必填 column
    description: str


# ---- task/pic (000-002) -----------------------------------------------------------------
@dataclass(frozen=True)
class TaskPicDoc:
    path: str
    params: dict[str, Param]
    example_request: dict[str, str]
    example_answer: dict[str, Any]


_PIPE_ROW = re.compile(r"^\|\s*([a-z_]+)\s*\|\s*(\w+)\s*\|\s*(是|否)\s*\|\s*(.*?)\s*\|$")
# 001 and 002 were saved with their table cells run together and the 必填 column lost:
# "output_typeinteger返回类型:..." (the name is the longest that a type word follows).
_RUN_ROW = re.compile(r"^([a-z_]+)(file|string|integer)()(\S.*)$")


def taskpic(kind: str) -> TaskPicDoc:
    doc = text(TASKPIC_DOCS[kind])
    (path,) = set(re.findall(r"/task/pic/[a-z]+", doc.split("请求示例")[0]))
    table = doc[doc.index("表单参数") : doc.index("curl 示例")]
    params: dict[str, Param] = {}
    for line in table.splitlines():
        line = line.strip()
        match = _PIPE_ROW.match(line) or _RUN_ROW.match(line)
        if match:
            name, kind_, req, desc = match.groups()
            params[name] = Param(name, kind_, None if not req else req == "是", desc)
    request = dict(re.findall(r'-F "([a-z_]+)=([^"]*)"', doc))
    return TaskPicDoc(path, params, request, json_after(doc, "返回示例(200)"))


def enumerated(description: str) -> dict[str, str]:
    """`返回类型:1=图片+蒙版、2=仅图片` -> {"1": "图片+蒙版", "2": "仅图片"} (also `png=透明图`);
    a list's items follow its colon or a separator ("仅在 format=jpg 时" is no list)."""
    return dict(re.findall(r"(?:^|[::、,,])\s*([0-9a-z]+)=([^、,,()()]+)", description))


def default_choice(description: str) -> str:
    """`0=异步(默认),1=同步` -> "0"."""
    match = re.search(r"([0-9a-z]+)=[^、,,]*默认", description)
    assert match is not None, description
    return match[1]


# ---- Tencent ReplaceBackground (003) ------------------------------------------------------
@dataclass(frozen=True)
class TencentDoc:
    action: str
    version: str
    inputs: dict[str, Param]
    outputs: dict[str, str]
    example_input: dict[str, Any]
    example_output: dict[str, Any]
    errors: dict[str, str]
    text: str


def tencent() -> TencentDoc:
    doc = text(TENCENT_DOC)
    inputs_part = doc[doc.index("2. 输入参数") : doc.index("3. 输出参数")]
    outputs_part = doc[doc.index("3. 输出参数") : doc.index("4. 示例")]
    errors_part = doc[doc.index("6. 错误码") :]
    inputs = {}
    for name, req, kind, desc in re.findall(r"^(\w+) \| (是|否) \| (\w+) \| (.*) \|$", inputs_part, re.M):
        inputs[name] = Param(name, kind, req == "是", desc)
    outputs = dict(re.findall(r"^(\w+) \| \w+ \| (.*) \|$", outputs_part, re.M))
    outputs.pop("参数名称", None)
    errors = dict(re.findall(r"^([A-Za-z]+(?:\.[A-Za-z]+)*) \| (.*?) \|$", errors_part, re.M))
    errors.pop("错误码", None)
    action = re.search(r"本接口取值:(\w+)", inputs["Action"].description)
    version = re.search(r"本接口取值:([\d-]+)", inputs["Version"].description)
    assert action is not None
    assert version is not None
    return TencentDoc(
        action[1],
        version[1],
        inputs,
        outputs,
        json_after(doc, "输入示例"),
        json_after(doc, "输出示例")["Response"],
        errors,
        doc,
    )


# ---- HD redraw (004) ----------------------------------------------------------------------
@dataclass(frozen=True)
class HdEndpoint:
    path: str
    params: dict[str, Param]
    answer: dict[str, Any]
    answer_fields: dict[str, str]
    errors: dict[str, str]
    example_data: dict[str, Any]
    notes: str = ""
    extra_answers: dict[str, dict[str, Any]] = field(default_factory=dict)


def _cells(part: str) -> list[str]:
    """The table cells of a section (004 writes one cell a line, each ending in ` |`)."""
    cells = []
    for line in part.splitlines():
        line = line.strip()
        if line.endswith("|"):
            cells.append(line.strip("| ").strip())
    return cells


def _assignments(part: str) -> dict[str, Any]:
    """`name = value  # comment` lines of the example code (its indentation was lost)."""
    found: dict[str, Any] = {}
    for line in part.splitlines():
        match = re.match(r"^([A-Za-z_]\w*) = (.+)$", line.strip())
        if not match:
            continue
        try:
            node = ast.parse(match[2], mode="eval").body
            found[match[1]] = ast.literal_eval(node)
        except (SyntaxError, ValueError):
            continue
    return found


def _example_data(part: str, base: dict[str, Any]) -> dict[str, Any]:
    """The `data={...}` the example code posts, its variables resolved from the same code."""
    if "data={" not in part:
        return {}
    values = {**base, **_assignments(part)}
    block = part[part.index("data={") + len("data={") : part.index("}", part.index("data={"))]
    data: dict[str, Any] = {}
    for key, raw in re.findall(r'"(\w+)":\s*([^,\n]+)', block):
        raw = raw.strip()
        data[key] = values[raw] if raw in values else ast.literal_eval(raw)
    return data


def hdredraw() -> dict[str, HdEndpoint]:
    doc = text(HD_DOC)
    parts = doc.split("\n端点\n")
    constants = _assignments(parts[1])  # BASE_URL, USER_KEY
    endpoints: dict[str, HdEndpoint] = {}
    # A section runs from its "端点" to the next one; its example code sits before the next.
    for part in parts[1:]:
        path = part.splitlines()[0].removeprefix("POST ").strip()
        table = part[part.index("参数\n") : part.index("响应")]
        cells = _cells(table)
        params = {}
        for i in range(4, len(cells) - 3, 4):
            name, kind, req, desc = cells[i : i + 4]
            params[name] = Param(name, kind, req == "是", desc)
        after = part[part.index("响应") :]
        fields_part = after[after.index("响应字段") : after.index("错误代码")]
        field_cells = _cells(fields_part)[3:]
        answer_fields = dict(zip(field_cells[0::3], field_cells[2::3], strict=True))
        errors_part = after[after.index("错误代码") :]
        errors_end = min(i for i in (errors_part.find("注意事项"), errors_part.find("示例代码")) if i > 0)
        error_cells = _cells(errors_part[:errors_end])[2:]
        errors = {m.strip('"'): d for m, d in zip(error_cells[0::2], error_cells[1::2], strict=True)}
        notes = errors_part[errors_end : errors_part.find("示例代码") if "示例代码" in errors_part else None]
        extra: dict[str, dict[str, Any]] = {}
        if "单图片任务响应示例" in after:
            answer = json_after(after, "单图片任务响应示例")
            extra["multi"] = json_after(after, "多图片任务响应示例")
            notes = errors_part[errors_end:]
        else:
            answer = json_after(after, "响应")
        endpoints[path] = HdEndpoint(
            path, params, answer, answer_fields, errors, _example_data(part, constants), notes, extra
        )
    # The check_task_status example (posted in the first section's code) and the constants.
    status = endpoints["/api/check_task_status"]
    code = parts[1]
    data = {"user_key": _assignments(code)["USER_KEY"], "task_id": "<task_id>"}
    endpoints[status.path] = HdEndpoint(
        status.path,
        status.params,
        status.answer,
        status.answer_fields,
        status.errors,
        data,
        status.notes,
        status.extra_answers,
    )
    return endpoints


def hd_example_user_key() -> str:
    return str(_assignments(text(HD_DOC))["USER_KEY"])


def hd_terminal_statuses() -> set[str | None]:
    """The statuses the document's example polling loop stops on."""
    doc = text(HD_DOC)
    done = re.findall(r"status_info\['status'\] == '(\w+)'", doc)
    stop = re.search(r"status_info\['status'\] in \[(.*?)\]", doc)
    assert stop is not None
    return {*done, *ast.literal_eval(f"[{stop[1]}]")}


def number_range(description: str) -> tuple[float, float] | None:
    """`(1-8)`, `(0.1-0.9,默认:0.5)`, `(0-1,默认0.5)` -> (low, high)."""
    match = re.search(r"[((](\d+(?:\.\d+)?)-(\d+(?:\.\d+)?)", description)
    return (float(match[1]), float(match[2])) if match else None


def default_of(description: str) -> str | None:
    """`默认:5` / `默认0.5` / `默认:"v1"` / `默认:""` / `默认 2` -> the default's text."""
    quoted = re.search(r'默认[::]\s*"([^"]*)"', description)
    if quoted:
        return quoted[1]
    match = re.search(r"默认[::\s]*([^,),]+)", description)
    return match[1].strip() if match else None


README = Path(__file__).resolve().parents[2] / "mock_upstream" / "README.md"


def declared_extras() -> set[str]:
    """Answer fields the mock's README declares under "Not in the documents" (`name` in a
    line starting "- field")."""
    section = README.read_text(encoding="utf-8").split("## Not in the documents", 1)[1].split("\n## ", 1)[0]
    names: set[str] = set()
    for line in section.splitlines():
        if line.startswith("- field "):
            names.update(re.findall(r"`([A-Za-z_.\[\]]+)`", line.split(":", 1)[0]))
    return names


# ---- the checker -------------------------------------------------------------------------
def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def shape_differences(
    example: Any, answer: Any, *, path: str = "", optional: frozenset[str] = frozenset()
) -> list[str]:
    """Every field of `example` missing from `answer` or of another JSON type, every field of
    `answer` that `example` does not have (but `optional`), recursively; [] when they match."""
    where = path or "(answer)"
    if _type_name(example) != _type_name(answer) and not (
        _type_name(example) == "number" and _type_name(answer) == "integer"
    ):
        return [f"{where}: the document has {_type_name(example)}, the answer {_type_name(answer)}"]
    problems: list[str] = []
    if isinstance(example, dict):
        for key in example:
            name = f"{path}.{key}" if path else key
            if key not in answer:
                problems.append(f"{name}: documented, missing from the answer")
            else:
                problems += shape_differences(example[key], answer[key], path=name, optional=optional)
        for key in answer:
            name = f"{path}.{key}" if path else key
            if key not in example and name not in optional:
                problems.append(f"{name}: in the answer, not in the document")
    elif isinstance(example, list) and example and answer:
        for index, item in enumerate(answer):
            problems += shape_differences(example[0], item, path=f"{path}[{index}]", optional=optional)
    return problems
