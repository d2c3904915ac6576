"""docs/protocol.md's examples, run against the real controller. Everything compared is parsed from the
document's text, so the document cannot go stale without this test failing."""

import json
import re
from pathlib import Path

import pytest

from converge.core.canonical import etag

DOC = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"


def section(text, heading):
    start = text.index(heading)
    following = re.search(r"^#{2,3} ", text[start + len(heading):], re.MULTILINE)
    return text[start:start + len(heading) + following.start()] if following else text[start:]


@pytest.fixture(scope="module")
def doc():
    return DOC.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def worked_example(doc):
    text = section(doc, "### Worked example")
    root = re.search(r"Root `([^`]+)` holds", text).group(1)
    objects = re.findall(r"^(\{.*\})\n\s+digest ([0-9a-f]{64}), bucket ([0-9a-f]{2})$", text, re.MULTILINE)
    answered = re.search(r'answers\s+`ETag: ("[0-9a-f]{64}")`', text).group(1)
    deleting = re.search(r"Deleting `([^`]+)` makes it\s+`(\"[0-9a-f]{64}\")`", text)
    assert len(objects) == 2, "the worked example lists two objects"
    return {"root": root, "objects": [(json.loads(o), d, b) for o, d, b in objects], "etag": answered,
            "deleted": deleting.group(1), "etag_after_delete": deleting.group(2)}


def test_the_worked_example_gives_the_documented_etags(fabric, worked_example):
    root = worked_example["root"]
    puts = [{"op": "put", "object": obj} for obj, _, _ in worked_example["objects"]]
    response = fabric.batch(root, puts, if_match=etag(0))
    assert response.status_code == 200, response.text
    assert response.headers["ETag"] == worked_example["etag"]
    assert fabric.get(f"/v1/roots/{root}")["etag"] == worked_example["etag"]
    for obj, digest, bucket in worked_example["objects"]:
        found = fabric.get(f"/v1/roots/{root}/objects/{obj['kind']}/{obj['id']}")
        assert found["object"] == obj and found["digest"] == digest
        listing = fabric.get(f"/v1/roots/{root}/buckets/{bucket}")
        assert listing["sum"] == digest
        assert listing["objects"] == [{"kind": obj["kind"], "id": obj["id"], "digest": digest}]
    [deleted] = [obj for obj, _, _ in worked_example["objects"] if obj["id"] == worked_example["deleted"]]
    response = fabric.batch(root, [{"op": "delete", "kind": deleted["kind"], "id": deleted["id"]}],
                            if_match=worked_example["etag"])
    assert response.status_code == 200, response.text
    assert response.headers["ETag"] == worked_example["etag_after_delete"]


def test_the_batch_body_example_is_accepted(fabric, doc):
    text = section(doc, "### `POST /v1/roots/{root}/batch`")
    body = json.loads(re.search(r"```json\n(.*?)```", text, re.DOTALL).group(1))
    response = fabric.batch("example", body["operations"], if_match=etag(0))
    assert response.status_code == 200, response.text
    assert response.json()["applied"] == len(body["operations"])


def test_every_documented_error_code_is_one_the_controller_knows(doc):
    from converge.fabric.errors import STATUS, ErrorCode

    table = section(doc, "## Conventions")
    for status, codes in re.findall(r"^\| (\d{3}(?:/\d{3})?) \| (.+?) \|", table, re.MULTILINE):
        for code in re.findall(r"`([a-z_]+)`", codes):
            assert str(STATUS[ErrorCode(code)]) in status.split("/"), code


def test_the_localising_example_gets_the_documented_answer(fabric, doc, worked_example):
    root = worked_example["root"]
    puts = [{"op": "put", "object": obj} for obj, _, _ in worked_example["objects"]]
    assert fabric.batch(root, puts, if_match=etag(0)).status_code == 200
    text = section(doc, "### Localising drift")
    path, query = re.search(r"^GET (/v1/roots/[^?\s]+)\?(\S+)$", text, re.MULTILINE).groups()
    answer = json.loads(re.search(r"```json\n(.*?)```", text, re.DOTALL).group(1))
    params = dict(pair.split("=", 1) for pair in query.split("&"))
    assert fabric.get(path, params) == answer
