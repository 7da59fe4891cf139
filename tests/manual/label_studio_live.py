"""The Label Studio round trip against a real Label Studio, run by hand (not part of the suite: Label
Studio is ~1 GB of Django and a server; CI tests the documented formats in test_review_loop.py).

    pip install label-studio   # in its own venv: ~1 GB, Django; 1.23.2 took 4 minutes here
    label-studio start --no-browser --port 8089 --username U --password P --user-token <token>
    # 1.23 refuses legacy tokens until the organization allows them (Organization -> API Tokens
    # settings, or JWTSettings.legacy_api_tokens_enabled = True in `manage.py shell`)
    export BALLAST_LABEL_STUDIO_URL=http://127.0.0.1:8089 BALLAST_LABEL_STUDIO_TOKEN=<token>
    pytest tests/manual/label_studio_live.py

Our tasks (with the model's boxes as predictions) go in through its import API; a reviewer's
annotations go in through its annotation API; its own JSON export comes back through our parser.
"""

from __future__ import annotations

import json
import os
import urllib.request

import pytest

from ballast.api.inbox import FeedbackReport, InboxPredictions, PredictedBox
from ballast.policy import reviewtasks as rt

URL = os.environ.get("BALLAST_LABEL_STUDIO_URL", "")
TOKEN = os.environ.get("BALLAST_LABEL_STUDIO_TOKEN", "")
CLASSES = ["title", "date", "total"]

pytestmark = pytest.mark.skipif(not (URL and TOKEN), reason="no Label Studio given (BALLAST_LABEL_STUDIO_URL/TOKEN)")


def call(method: str, path: str, body: object = None) -> object:
    request = urllib.request.Request(
        URL + path,
        data=None if body is None else json.dumps(body).encode(),
        method=method,
        headers={"Authorization": f"Token {TOKEN}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read() or b"null")


def task(number: int) -> dict:
    report = FeedbackReport(
        document_id=f"DOC-{number}",
        reported_by="user",
        reported_at="20261126T120000000000Z",
        model="v1.3",
        image_file="image.png",
    )
    predictions = InboxPredictions(
        model="v1.3",
        image_width=200,
        image_height=100,
        boxes=[PredictedBox(cls=1, name="date", confidence=0.8, box=(20.0, 10.0, 60.0, 30.0))],
    )
    name = f"images/2026-DOC-{number}.png"
    return rt.label_studio_task(f"/data/local-files/?d={name}", name, report, predictions, CLASSES)


def test_tasks_with_predictions_survive_label_studio_and_only_its_annotated_tasks_come_back_reviewed():
    project = call("POST", "/api/projects", {"title": "ballast inbox", "label_config": rt.label_studio_config(CLASSES)})
    pid = project["id"]  # type: ignore[index]
    call("POST", f"/api/projects/{pid}/import", [task(0), task(1), task(2)])
    stored = call("GET", f"/api/tasks?project={pid}&fields=all")
    tasks = sorted(stored["tasks"] if isinstance(stored, dict) else stored, key=lambda t: t["id"])  # type: ignore[index]
    assert len(tasks) == 3
    first, second, _third = tasks
    # The reviewer accepts the prediction on the first page, and moves it and adds a total on the second.
    accepted = task(0)["predictions"][0]["result"]
    moved = json.loads(json.dumps(accepted))
    moved[0]["value"]["x"] = 5.0
    added = {**moved[0], "id": "new", "value": {**moved[0]["value"], "x": 50, "y": 50, "width": 10, "height": 20}}
    added["value"]["rectanglelabels"] = ["total"]
    call("POST", f"/api/tasks/{first['id']}/annotations", {"result": accepted, "was_cancelled": False})
    call("POST", f"/api/tasks/{second['id']}/annotations", {"result": [*moved, added], "was_cancelled": False})

    exported = call("GET", f"/api/projects/{pid}/export?exportType=JSON&download_all_tasks=true")
    pages = sorted(rt.parse_label_studio_export(exported, CLASSES), key=lambda p: p.image)
    assert [p.image for p in pages] == ["images/2026-DOC-0.png", "images/2026-DOC-1.png", "images/2026-DOC-2.png"]
    assert [p.reviewed for p in pages] == [True, True, False]
    assert all(p.error is None for p in pages)
    assert pages[0].labels == "1 0.200000 0.200000 0.200000 0.200000\n"
    assert pages[1].labels == "1 0.150000 0.200000 0.200000 0.200000\n2 0.550000 0.600000 0.100000 0.200000\n"
    assert pages[0].reviewer and pages[0].reviewer.startswith(("label-studio user ", "rev@"))
