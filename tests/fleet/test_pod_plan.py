"""The local kubelet's pod planning: scale up/down, rollouts, status."""

from shoal.fleet.pod_plan import PodState, build_pod, deployment_status, plan_pods, pod_status, template_hash


def pod(name, h="new", ready=True, seq=0, terminating=False):
    return PodState(name=name, template_hash=h, ready=ready, created_seq=seq, terminating=terminating)


def test_scale_up_from_nothing_creates_all():
    assert plan_pods(3, "new", []).create == 3


def test_scale_down_drains_not_ready_then_newest():
    pods = [pod("a", seq=1), pod("b", seq=2), pod("c", ready=False, seq=0), pod("d", seq=3)]
    plan = plan_pods(2, "new", pods)
    assert plan.create == 0
    assert plan.drain == ("c", "d")


def test_terminating_pods_are_not_counted():
    plan = plan_pods(2, "new", [pod("a"), pod("b", terminating=True)])
    assert plan == plan.__class__(create=1, drain=())


def test_rollout_keeps_old_pod_until_new_one_is_ready():
    old = pod("old", h="old", seq=0)
    plan = plan_pods(1, "new", [old])
    assert plan.create == 1 and plan.drain == ()
    plan = plan_pods(1, "new", [old, pod("new1", ready=False, seq=1)])
    assert plan.create == 0 and plan.drain == ()
    plan = plan_pods(1, "new", [old, pod("new1", ready=True, seq=1)])
    assert plan.create == 0 and plan.drain == ("old",)


def test_stale_not_ready_pods_go_at_once_and_scale_to_zero_drains_everything():
    plan = plan_pods(1, "new", [pod("old", h="old", ready=False), pod("n", seq=1)])
    assert plan.drain == ("old",)
    plan = plan_pods(0, "new", [pod("old", h="old"), pod("n", seq=1)])
    assert plan.create == 0 and set(plan.drain) == {"old", "n"}


def test_template_hash_is_stable_and_sensitive():
    t = {"spec": {"containers": [{"name": "engine", "args": ["--max-num-seqs", "8"]}]}}
    same = {"spec": {"containers": [{"args": ["--max-num-seqs", "8"], "name": "engine"}]}}
    other = {"spec": {"containers": [{"name": "engine", "args": ["--max-num-seqs", "16"]}]}}
    assert template_hash(t) == template_hash(same) != template_hash(other)


def test_build_pod_carries_template_labels_hash_and_owner():
    dep = {
        "metadata": {"name": "chat", "namespace": "ml", "uid": "u1", "generation": 4},
        "spec": {"replicas": 2, "template": {"metadata": {"labels": {"shoal.dev/service": "chat"}},
                                              "spec": {"containers": [{"name": "engine"}]}}},
    }
    p = build_pod(dep, "abcdef123456", "x1y2z")
    assert p.name == "chat-abcdef12-x1y2z"
    assert p.labels == {"shoal.dev/service": "chat", "pod-template-hash": "abcdef123456"}
    assert p.body["metadata"]["ownerReferences"][0]["uid"] == "u1"
    assert p.body["spec"]["containers"] == [{"name": "engine"}]
    status = deployment_status(dep, "abcdef123456", [pod("a", h="abcdef123456"), pod("b", h="old", ready=False)])
    assert status.as_status() == {"observedGeneration": 4, "replicas": 2, "updatedReplicas": 1, "readyReplicas": 1,
                                  "availableReplicas": 1, "unavailableReplicas": 1}


def test_pod_status_ready_condition():
    s = pod_status("Running", True, "127.0.0.1", 2, "t0", "t1")
    assert s["podIP"] == "127.0.0.1"
    assert {c["type"]: c["status"] for c in s["conditions"]} == {"Ready": "True", "ContainersReady": "True"}
    assert s["containerStatuses"][0]["restartCount"] == 2
    assert pod_status("Pending", False, None, 0, None, "t1")["conditions"][0]["status"] == "False"
