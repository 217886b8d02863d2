"""The official Python `kubernetes` client against Tugboat: what a Python
user of a real cluster relies on."""

import json
import threading
import uuid

import pytest
from kubernetes import client, watch
from kubernetes.client.rest import ApiException


def configmap(name, data=None):
    return client.V1ConfigMap(metadata=client.V1ObjectMeta(name=name), data=data or {})


def deployment(name, image):
    labels = {"app": name}
    return client.V1Deployment(
        metadata=client.V1ObjectMeta(name=name, labels=labels),
        spec=client.V1DeploymentSpec(
            replicas=1,
            selector=client.V1LabelSelector(match_labels=labels),
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels=labels),
                spec=client.V1PodSpec(containers=[client.V1Container(name="main", image=image)]),
            ),
        ),
    )


def api_error(call, *args, **kwargs):
    """Run a call expected to fail; return (HTTP status, Status body)."""
    with pytest.raises(ApiException) as info:
        call(*args, **kwargs)
    body = json.loads(info.value.body)
    assert body["kind"] == "Status" and body["status"] == "Failure", body
    assert body["code"] == info.value.status, body
    return info.value.status, body


def test_version_and_discovery_apis_answer(api_client):
    # VersionApi asks for /version/ (with the slash), as upstream serves it.
    version = client.VersionApi(api_client).get_code()
    assert version.major == "1" and version.git_version.startswith("v1.")
    assert "v1" in client.CoreApi(api_client).get_api_versions().versions
    groups = {g.name for g in client.ApisApi(api_client).get_api_versions().groups}
    assert {"apps", "batch"} <= groups
    resources = {r.name for r in client.AppsV1Api(api_client).get_api_resources().resources}
    assert {"deployments", "deployments/scale"} <= resources


def test_configmaps_can_be_created_read_replaced_patched_and_deleted(core, namespace):
    created = core.create_namespaced_config_map(namespace, configmap("settings", {"color": "blue"}))
    assert created.metadata.namespace == namespace
    assert created.metadata.uid and created.metadata.resource_version
    assert created.metadata.creation_timestamp is not None

    read = core.read_namespaced_config_map("settings", namespace)
    assert read.data == {"color": "blue"}

    read.data["color"] = "green"
    replaced = core.replace_namespaced_config_map("settings", namespace, read)
    assert replaced.data == {"color": "green"}
    assert replaced.metadata.resource_version != created.metadata.resource_version

    # A dict body is sent as a strategic merge patch; a list as a JSON patch.
    patched = core.patch_namespaced_config_map("settings", namespace, {"data": {"size": "L"}})
    assert patched.data == {"color": "green", "size": "L"}
    patched = core.patch_namespaced_config_map(
        "settings", namespace, [{"op": "remove", "path": "/data/color"}]
    )
    assert patched.data == {"size": "L"}

    names = [cm.metadata.name for cm in core.list_namespaced_config_map(namespace).items]
    assert "settings" in names

    core.delete_namespaced_config_map("settings", namespace)
    status, body = api_error(core.read_namespaced_config_map, "settings", namespace)
    assert status == 404 and body["reason"] == "NotFound"


def test_namespaces_can_be_created_read_labelled_and_deleted(core):
    name = "py-ns-" + uuid.uuid4().hex[:6]
    created = core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    assert created.status.phase == "Active"
    assert created.metadata.labels.get("kubernetes.io/metadata.name") == name

    assert name in [ns.metadata.name for ns in core.list_namespace().items]
    patched = core.patch_namespace(name, {"metadata": {"labels": {"team": "py"}}})
    assert patched.metadata.labels["team"] == "py"
    selected = core.list_namespace(label_selector="team=py").items
    assert [ns.metadata.name for ns in selected] == [name]

    core.delete_namespace(name)
    # Deleting a namespace is two-phase: it is Terminating until emptied
    # (or already gone once a namespace controller has finished it).
    try:
        ns = core.read_namespace(name)
        assert ns.status.phase == "Terminating"
        assert ns.metadata.deletion_timestamp is not None
        status, body = api_error(core.create_namespaced_config_map, name, configmap("late"))
        assert status == 403 and body["reason"] == "Forbidden"
    except ApiException as e:
        assert e.status == 404


def test_deployments_can_be_created_patched_and_read(apps, namespace):
    created = apps.create_namespaced_deployment(namespace, deployment("web", "nginx:1.25"))
    assert created.metadata.generation == 1
    assert created.spec.strategy.type == "RollingUpdate"

    patched = apps.patch_namespaced_deployment(
        "web", namespace,
        {"spec": {"replicas": 3, "template": {"spec": {"containers": [{"name": "main", "image": "nginx:1.27"}]}}}},
    )
    assert patched.spec.replicas == 3
    assert patched.metadata.generation == 2

    read = apps.read_namespaced_deployment("web", namespace)
    assert read.spec.replicas == 3
    assert [(c.name, c.image) for c in read.spec.template.spec.containers] == [("main", "nginx:1.27")]

    scale = apps.read_namespaced_deployment_scale("web", namespace)
    assert scale.spec.replicas == 3
    apps.patch_namespaced_deployment_scale("web", namespace, {"spec": {"replicas": 5}})
    assert apps.read_namespaced_deployment("web", namespace).spec.replicas == 5

    assert [d.metadata.name for d in apps.list_namespaced_deployment(namespace).items] == ["web"]


def test_paging_with_limit_and_continue_returns_every_object_exactly_once(core, namespace):
    for i in range(25):
        core.create_namespaced_config_map(namespace, configmap(f"item-{i:02d}"))
    expected = [cm.metadata.name for cm in core.list_namespaced_config_map(namespace).items]
    assert len(expected) >= 25

    seen, token, pages = [], None, 0
    while True:
        kwargs = {"limit": 4}
        if token:
            kwargs["_continue"] = token
        page = core.list_namespaced_config_map(namespace, **kwargs)
        pages += 1
        assert len(page.items) <= 4
        seen.extend(cm.metadata.name for cm in page.items)
        token = page.metadata._continue
        if not token:
            break
        assert page.metadata.remaining_item_count is None or page.metadata.remaining_item_count > 0
        assert pages < 50, "paging does not end"
    assert len(seen) == len(set(seen)), f"an object was listed twice: {seen}"
    assert seen == expected
    assert pages == -(-len(expected) // 4)


def test_watch_resumed_from_a_listed_resource_version_yields_exactly_the_later_events(core, namespace):
    for name in ["old-a", "old-b"]:
        core.create_namespaced_config_map(namespace, configmap(name))
    rv = core.list_namespaced_config_map(namespace).metadata.resource_version

    core.create_namespaced_config_map(namespace, configmap("new", {"n": "1"}))
    core.patch_namespaced_config_map("old-a", namespace, {"data": {"touched": "yes"}})
    core.delete_namespaced_config_map("old-b", namespace)

    expected = [("ADDED", "new"), ("MODIFIED", "old-a"), ("DELETED", "old-b"), ("ADDED", "sentinel")]
    got = []
    w = watch.Watch()
    # A safety net: stop the watch if the expected events never come.
    timer = threading.Timer(20, w.stop)
    timer.start()
    try:
        for event in w.stream(core.list_namespaced_config_map, namespace,
                              resource_version=rv, timeout_seconds=30):
            if event["type"] == "BOOKMARK":
                continue
            got.append((event["type"], event["object"].metadata.name))
            if len(got) == len(expected) - 1:
                # Made while watching: nothing may arrive between the
                # resumed events and this one.
                core.create_namespaced_config_map(namespace, configmap("sentinel"))
            if len(got) == len(expected):
                w.stop()
    finally:
        timer.cancel()
    assert got == expected


def test_api_errors_carry_upstream_status_codes_and_reasons(core, namespace):
    status, body = api_error(core.read_namespaced_config_map, "missing", namespace)
    assert (status, body["reason"]) == (404, "NotFound")
    assert body["details"]["name"] == "missing" and body["details"]["kind"] == "configmaps"

    status, body = api_error(core.create_namespaced_config_map, "no-such-namespace", configmap("x"))
    assert (status, body["reason"]) == (404, "NotFound")

    first = core.create_namespaced_config_map(namespace, configmap("dup"))
    status, body = api_error(core.create_namespaced_config_map, namespace, configmap("dup"))
    assert (status, body["reason"]) == (409, "AlreadyExists")

    core.patch_namespaced_config_map("dup", namespace, {"data": {"k": "v"}})
    status, body = api_error(core.replace_namespaced_config_map, "dup", namespace, first)
    assert (status, body["reason"]) == (409, "Conflict")
    assert "the object has been modified" in body["message"]

    status, body = api_error(core.create_namespaced_config_map, namespace, configmap("Not_A_DNS_Name"))
    assert (status, body["reason"]) == (422, "Invalid")
    assert [c["field"] for c in body["details"]["causes"]] == ["metadata.name"]

    status, body = api_error(
        core.create_namespaced_config_map, namespace,
        client.V1ConfigMap(metadata=client.V1ObjectMeta(name="bad-key"), data={"not a key!": "v"}),
    )
    assert (status, body["reason"]) == (422, "Invalid")
