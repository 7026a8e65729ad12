"""On a Space only the owner and the members it allows may train; visitors see nothing of the owner's."""
from __future__ import annotations

import json
import time

import pytest
from spacehelpers import MEMBER, OWNER, TOKEN_OF

pytestmark = pytest.mark.slow  # starts the app as a Space (make test runs it)

QUICK = """
project_name: {name}
model: {{base_model: tiny-demo}}
data: {{chat_template: chatml, max_rows: 30}}
lengths: {{block_size: 128}}
training: {{max_steps: {steps}, batch_size: 2, gradient_accumulation: 1, logging_steps: 1, save_strategy: steps,
           save_steps: 2, eval_strategy: "no"}}
"""


@pytest.mark.parametrize("who, allowed", [("anonymous", False), ("stranger", False), ("owner", True),
                                          ("member", True)])
def test_on_a_space_only_the_owner_and_members_may_train(space: dict, who: str, allowed: bool) -> None:
    client = space[who]
    spec = QUICK.format(name="space-run", steps=1).replace("data: {", "data: {path: examples/capitals.jsonl, ")
    if allowed:
        result = client.predict(spec, None, api_name="/start_training")
        assert result["status"] == "queued" and TOKEN_OF[OWNER if who == "owner" else MEMBER] not in \
            json.dumps(result)
        client.predict(result["job_id"], api_name="/stop_job")
        deadline = time.monotonic() + 120  # the attacks compare training processes before and after
        while client.predict(result["job_id"], False, api_name="/job_status")["status"] not in \
                ("stopped", "succeeded", "failed") and time.monotonic() < deadline:
            time.sleep(0.5)
    else:
        with pytest.raises(Exception, match="Sign in|not a member"):
            client.predict(spec, None, api_name="/start_training")
        with pytest.raises(Exception, match="Sign in|not a member"):
            client.predict("nope", api_name="/stop_job")
        with pytest.raises(Exception, match="duplicate this Space"):  # visitors see nothing of the owner's
            client.predict(10, api_name="/list_jobs")
        return
    assert isinstance(client.predict(10, api_name="/list_jobs"), list), "members see the jobs"
