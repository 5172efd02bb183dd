"""Drives the gcp-emulator with Google's own Python client (google-api-python-client),
built from the very discovery documents the emulator serves, and checks that
the client's own parsing (HttpError.status_code / error_details / reason) sees
Google's statuses and reasons.

Run through run.sh, which builds the emulator and sets EMULATOR_BIN.
"""

import datetime
import json
import os
import pathlib
import socket
import subprocess
import sys
import time

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from google.auth.credentials import AnonymousCredentials
from googleapiclient.discovery import build_from_document
from googleapiclient.errors import HttpError
from google.api_core import exceptions as gexc
from google.api_core.client_options import ClientOptions
from google.cloud import certificate_manager_v1 as cm

HERE = pathlib.Path(__file__).resolve().parent
DISCOVERY = HERE.parent / "discovery"
PROJECT = "demo-project"
NUMBER = 123456789012
REGION = "us-central1"
COMPUTE_LINK = "https://www.googleapis.com/compute/v1/projects/" + PROJECT


def free_port():
    """A port free for both TCP and UDP (the DNS server binds both)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as t:
            t.bind(("127.0.0.1", 0))
            port = t.getsockname()[1]
            try:
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
                    u.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port")


@pytest.fixture(scope="session")
def emulator():
    binary = os.environ.get("EMULATOR_BIN")
    if not binary:
        raise RuntimeError("EMULATOR_BIN is not set: run through run.sh")
    http_port, dns_port = free_port(), free_port()
    proc = subprocess.Popen(
        [
            binary,
            "--listen", f"127.0.0.1:{http_port}",
            "--dns-listen", f"127.0.0.1:{dns_port}",
            "--dns-servers", "1",
            "--project", PROJECT,
            "--project-number", str(NUMBER),
            "--operation-delay-ms", "50",
            "--dns-change-delay-ms", "50",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    line = proc.stdout.readline()
    if not line.startswith("gcp-emulator listening http="):
        proc.kill()
        raise RuntimeError(f"emulator did not start: {line!r}")
    addr = line.split("http=")[1].split()[0]
    yield f"http://{addr}/"
    proc.terminate()
    proc.wait(timeout=10)


def client(emulator, doc, prefix=""):
    with open(DISCOVERY / doc) as f:
        document = f.read()
    return build_from_document(
        document,
        client_options={"api_endpoint": emulator + prefix},
        credentials=AnonymousCredentials(),
    )


@pytest.fixture(scope="session")
def compute(emulator):
    # compute's servicePath is compute/v1/ and its method paths are relative to it.
    return client(emulator, "compute.v1.lb-subset.json", "compute/v1/")


@pytest.fixture(scope="session")
def dns(emulator):
    return client(emulator, "dns.v1.json")


@pytest.fixture(scope="session")
def iap(emulator):
    return client(emulator, "iap.v1.json")


@pytest.fixture(scope="session")
def run(emulator):
    return client(emulator, "run.v2.json")


@pytest.fixture(scope="session")
def serviceusage(emulator):
    return client(emulator, "serviceusage.v1beta1.json")


@pytest.fixture(scope="session")
def crm(emulator):
    return client(emulator, "cloudresourcemanager.v3.json")


def http_error(call):
    """Runs a request that must fail and returns the client's HttpError."""
    with pytest.raises(HttpError) as info:
        call.execute()
    return info.value


def reason_of(e):
    """Google's reason as the client parsed it: errors[0].reason (v1 APIs) or the
    ErrorInfo reason in details[0] (AIP-193 APIs)."""
    assert isinstance(e.error_details, list) and e.error_details, e.content
    return e.error_details[0]["reason"]


def status_of(e):
    return json.loads(e.content)["error"]["status"]


# --------------------------------------------------------------------- compute


def make_chain(name):
    """A CA and a leaf for NAME (PEMs), as an ACME CA would issue: leaf + intermediate."""
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Conformance CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=90))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    chain = (
        leaf.public_bytes(serialization.Encoding.PEM) + ca.public_bytes(serialization.Encoding.PEM)
    ).decode()
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    return chain, key_pem


def wait_global(compute, op):
    for _ in range(100):
        if op["status"] == "DONE":
            assert "error" not in op, op
            return op
        op = compute.globalOperations().wait(project=PROJECT, operation=op["name"]).execute()
    raise AssertionError(f"operation never finished: {op}")


def wait_region(compute, op):
    for _ in range(100):
        if op["status"] == "DONE":
            assert "error" not in op, op
            return op
        op = compute.regionOperations().wait(
            project=PROJECT, region=REGION, operation=op["name"]
        ).execute()
    raise AssertionError(f"operation never finished: {op}")


def insert_cert(compute, name):
    chain, key = make_chain("app.example.com")
    body = {
        "name": name,
        "type": "SELF_MANAGED",
        "selfManaged": {"certificate": chain, "privateKey": key},
    }
    return compute.sslCertificates().insert(project=PROJECT, body=body)


def test_compute_unknown_field_is_400_invalid(compute):
    e = http_error(
        compute.sslCertificates().insert(project=PROJECT, body={"name": "x", "bogus": 1})
    )
    assert e.status_code == 400
    assert reason_of(e) == "invalid"
    assert 'Unknown name "bogus"' in e.reason


def test_compute_missing_certificate_is_404_not_found(compute):
    e = http_error(compute.sslCertificates().get(project=PROJECT, sslCertificate="no-such-cert"))
    assert e.status_code == 404
    assert reason_of(e) == "notFound"


def test_compute_load_balancer_stack_and_certificate_swap(compute):
    wait_global(compute, insert_cert(compute, "cert-1").execute())
    cert = compute.sslCertificates().get(project=PROJECT, sslCertificate="cert-1").execute()
    assert cert["subjectAlternativeNames"] == ["app.example.com"]
    assert "privateKey" not in cert.get("selfManaged", {})

    e = http_error(insert_cert(compute, "cert-1"))
    assert e.status_code == 409
    assert reason_of(e) == "alreadyExists"

    neg = {
        "name": "neg-app",
        "networkEndpointType": "SERVERLESS",
        "cloudRun": {"service": "app"},
    }
    wait_region(
        compute,
        compute.regionNetworkEndpointGroups()
        .insert(project=PROJECT, region=REGION, body=neg)
        .execute(),
    )
    neg_link = f"{COMPUTE_LINK}/regions/{REGION}/networkEndpointGroups/neg-app"
    bs = {
        "name": "bs-app",
        "loadBalancingScheme": "EXTERNAL_MANAGED",
        "protocol": "HTTP",
        "backends": [{"group": neg_link}],
        "iap": {"enabled": True},
    }
    wait_global(compute, compute.backendServices().insert(project=PROJECT, body=bs).execute())
    um = {"name": "um-app", "defaultService": f"{COMPUTE_LINK}/global/backendServices/bs-app"}
    wait_global(compute, compute.urlMaps().insert(project=PROJECT, body=um).execute())
    proxy = {
        "name": "thp-app",
        "urlMap": f"{COMPUTE_LINK}/global/urlMaps/um-app",
        "sslCertificates": [f"{COMPUTE_LINK}/global/sslCertificates/cert-1"],
    }
    wait_global(compute, compute.targetHttpsProxies().insert(project=PROJECT, body=proxy).execute())

    # Rotation: new certificate, swap it onto the proxy, delete the old one.
    wait_global(compute, insert_cert(compute, "cert-2").execute())
    new_link = f"{COMPUTE_LINK}/global/sslCertificates/cert-2"
    wait_global(
        compute,
        compute.targetHttpsProxies()
        .setSslCertificates(
            project=PROJECT, targetHttpsProxy="thp-app", body={"sslCertificates": [new_link]}
        )
        .execute(),
    )
    got = compute.targetHttpsProxies().get(project=PROJECT, targetHttpsProxy="thp-app").execute()
    assert got["sslCertificates"] == [new_link]

    e = http_error(compute.sslCertificates().delete(project=PROJECT, sslCertificate="cert-2"))
    assert e.status_code == 400
    assert reason_of(e) == "resourceInUseByAnotherResource"

    wait_global(
        compute, compute.sslCertificates().delete(project=PROJECT, sslCertificate="cert-1").execute()
    )
    e = http_error(compute.sslCertificates().get(project=PROJECT, sslCertificate="cert-1"))
    assert e.status_code == 404
    assert reason_of(e) == "notFound"


# ------------------------------------------------------------------------- dns


def test_dns_zone_and_txt_change(dns):
    zone = {
        "name": "zone-example",
        "dnsName": "example.com.",
        "description": "conformance",
        "visibility": "public",
    }
    created = dns.managedZones().create(project=PROJECT, body=zone).execute()
    assert created["dnsName"] == "example.com."
    assert created["nameServers"]

    e = http_error(dns.managedZones().create(project=PROJECT, body=zone))
    assert e.status_code == 409
    assert reason_of(e) == "alreadyExists"

    txt = {
        "name": "_acme-challenge.example.com.",
        "type": "TXT",
        "ttl": 60,
        "rrdatas": ['"token-1"'],
    }
    change = dns.changes().create(
        project=PROJECT, managedZone="zone-example", body={"additions": [txt]}
    ).execute()
    for _ in range(100):
        if change["status"] == "done":
            break
        time.sleep(0.05)
        change = dns.changes().get(
            project=PROJECT, managedZone="zone-example", changeId=change["id"]
        ).execute()
    assert change["status"] == "done"

    rrsets = dns.resourceRecordSets().list(
        project=PROJECT, managedZone="zone-example", name=txt["name"], type="TXT"
    ).execute()
    assert rrsets["rrsets"][0]["rrdatas"] == ['"token-1"']

    # Deleting with data that does not match exactly: 412 conditionNotMet.
    wrong = dict(txt, rrdatas=['"someone-else"'])
    e = http_error(
        dns.changes().create(project=PROJECT, managedZone="zone-example", body={"deletions": [wrong]})
    )
    assert e.status_code == 412
    assert reason_of(e) == "conditionNotMet"

    # Deleting what does not exist: 404 notFound.
    ghost = dict(txt, name="_acme-challenge.ghost.example.com.")
    e = http_error(
        dns.changes().create(project=PROJECT, managedZone="zone-example", body={"deletions": [ghost]})
    )
    assert e.status_code == 404
    assert reason_of(e) == "notFound"

    # Adding what already exists: 409 alreadyExists.
    e = http_error(
        dns.changes().create(project=PROJECT, managedZone="zone-example", body={"additions": [txt]})
    )
    assert e.status_code == 409
    assert reason_of(e) == "alreadyExists"


# ------------------------------------------------------------- IAP, Run, IAM


IAP_RESOURCE = f"projects/{PROJECT}/iap_web/compute/services/bs-iap"
RUN_PARENT = f"projects/{PROJECT}/locations/{REGION}"


def test_iap_get_set_policy_and_conflict(iap):
    policy = iap.v1().getIamPolicy(
        resource=IAP_RESOURCE, body={"options": {"requestedPolicyVersion": 3}}
    ).execute()
    assert policy == {"etag": "ACAB"}
    policy["bindings"] = [
        {
            "role": "roles/iap.httpsResourceAccessor",
            "members": ["user:alice@example.com", "domain:example.com"],
        }
    ]
    updated = iap.v1().setIamPolicy(resource=IAP_RESOURCE, body={"policy": policy}).execute()
    assert updated["bindings"] == policy["bindings"]
    assert updated["etag"] != "ACAB"

    e = http_error(iap.v1().setIamPolicy(resource=IAP_RESOURCE, body={"policy": policy}))
    assert e.status_code == 409
    assert status_of(e) == "ABORTED"

    bad = {"etag": updated["etag"], "bindings": [
        {"role": "roles/iap.httpsResourceAccessor", "members": ["alice@example.com"]}
    ]}
    e = http_error(iap.v1().setIamPolicy(resource=IAP_RESOURCE, body={"policy": bad}))
    assert e.status_code == 400
    assert status_of(e) == "INVALID_ARGUMENT"
    assert reason_of(e) == "invalid"

    e = http_error(iap.v1().setIamPolicy(resource=IAP_RESOURCE, body={"policy": {"bogus": 1}}))
    assert e.status_code == 400
    assert status_of(e) == "INVALID_ARGUMENT"
    assert 'Unknown name "bogus"' in e.reason


def wait_lro(run, op):
    for _ in range(100):
        if op.get("done"):
            return op
        op = run.projects().locations().operations().wait(
            name=op["name"], body={"timeout": "60s"}
        ).execute()
    raise AssertionError(f"operation never finished: {op}")


def test_run_service_lifecycle_and_iam(run, serviceusage):
    services = run.projects().locations().services()
    op = services.create(
        parent=RUN_PARENT,
        serviceId="app",
        body={"template": {"containers": [{"image": "us-docker.pkg.dev/cloudrun/container/hello"}]}},
    ).execute()
    done = wait_lro(run, op)
    assert "error" not in done, done
    assert done["response"]["@type"] == "type.googleapis.com/google.cloud.run.v2.Service"

    name = f"{RUN_PARENT}/services/app"
    svc = services.get(name=name).execute()
    assert svc["ingress"] == "INGRESS_TRAFFIC_ALL"
    assert svc["uri"].startswith("https://app-")

    op = services.patch(
        name=name, updateMask="ingress", body={"ingress": "INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER"}
    ).execute()
    polled = run.projects().locations().operations().get(name=op["name"]).execute()
    assert polled["name"] == op["name"]
    done = wait_lro(run, op)
    assert done["response"]["ingress"] == "INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER"
    assert services.get(name=name).execute()["ingress"] == "INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER"

    e = http_error(services.get(name=f"projects/{PROJECT}/locations/europe-west1/services/app"))
    assert e.status_code == 404
    assert status_of(e) == "NOT_FOUND"

    e = http_error(services.create(parent=RUN_PARENT, serviceId="app", body={}))
    assert e.status_code == 409
    assert status_of(e) == "ALREADY_EXISTS"

    # The IAP service agent must exist before it can be granted anything.
    agent = f"serviceAccount:service-{NUMBER}@gcp-sa-iap.iam.gserviceaccount.com"
    policy = services.getIamPolicy(resource=name, options_requestedPolicyVersion=3).execute()
    policy["bindings"] = [{"role": "roles/run.invoker", "members": [agent]}]
    e = http_error(services.setIamPolicy(resource=name, body={"policy": policy}))
    assert e.status_code == 400
    assert status_of(e) == "INVALID_ARGUMENT"
    assert "does not exist" in e.reason

    identity = serviceusage.services().generateServiceIdentity(
        parent=f"projects/{PROJECT}/services/iap.googleapis.com"
    ).execute()
    assert identity["done"] is True
    assert identity["response"]["email"] == agent.split(":", 1)[1]

    updated = services.setIamPolicy(resource=name, body={"policy": policy}).execute()
    assert updated["bindings"] == policy["bindings"]
    assert services.getIamPolicy(resource=name).execute() == updated


def test_resource_manager_project_and_permissions(crm, emulator):
    project = crm.projects().get(name=f"projects/{PROJECT}").execute()
    assert project["name"] == f"projects/{NUMBER}"
    assert project["state"] == "ACTIVE"

    wanted = ["compute.sslCertificates.create", "dns.changes.create"]
    got = crm.projects().testIamPermissions(
        resource=f"projects/{PROJECT}", body={"permissions": wanted}
    ).execute()
    assert got["permissions"] == wanted

    post(emulator + "emulator/iam/denied", {"permissions": ["dns.changes.create"]})
    try:
        got = crm.projects().testIamPermissions(
            resource=f"projects/{PROJECT}", body={"permissions": wanted}
        ).execute()
        assert got["permissions"] == ["compute.sslCertificates.create"]
    finally:
        post(emulator + "emulator/iam/denied", {"permissions": []})

    e = http_error(crm.projects().get(name="projects/not-mine"))
    assert e.status_code == 403
    assert reason_of(e) == "IAM_PERMISSION_DENIED"


def test_disabled_api_is_403_access_not_configured(crm, emulator):
    post(emulator + "emulator/apis", {"api": "cloudresourcemanager.googleapis.com", "enabled": False})
    try:
        e = http_error(crm.projects().get(name=f"projects/{PROJECT}"))
        assert e.status_code == 403
        assert reason_of(e) == "SERVICE_DISABLED"
        assert "has not been used in project" in e.reason
    finally:
        post(emulator + "emulator/apis", {"api": "cloudresourcemanager.googleapis.com", "enabled": True})
    crm.projects().get(name=f"projects/{PROJECT}").execute()


def post(url, body):
    import urllib.request

    req = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req) as r:
        return r.status


# -------------------------------------------------------------------- metadata


def test_google_auth_uses_the_metadata_server(emulator):
    """google-auth's own GCE credentials fetch a token from the emulator. It reads
    GCE_METADATA_HOST at import time, so it runs in a fresh interpreter."""
    host = emulator.removeprefix("http://").rstrip("/")
    script = """
import google.auth.transport.requests as tr
from google.auth import compute_engine
from google.auth.compute_engine import _metadata
req = tr.Request()
assert _metadata.ping(req), "ping failed"
assert _metadata.get_project_id(req) == "demo-project"
creds = compute_engine.Credentials()
creds.refresh(req)
print(creds.token, creds.service_account_email)
"""
    env = dict(os.environ, GCE_METADATA_HOST=host, GCE_METADATA_IP=host)
    out = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    token, email = out.stdout.split()
    assert token == "ya29.emulator-access-token"
    assert email == f"{NUMBER}-compute@developer.gserviceaccount.com"


def test_metadata_requires_flavor_header(emulator):
    import urllib.error
    import urllib.request

    url = emulator + "computeMetadata/v1/instance/service-accounts/default/token"
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(url)
    assert info.value.code == 403
    assert info.value.headers["Metadata-Flavor"] == "Google"


def test_run_v1_and_resource_manager_v1_as_gcloud_uses_them(emulator, run):
    """The Cloud Run v1 and Resource Manager v1 subsets (what gcloud speaks),
    through Google's client built from their discovery documents. (The Knative
    `namespaces` paths live on regional hosts: gcloud_test.py covers them.)"""
    crm1 = client(emulator, "cloudresourcemanager.v1.json")
    p = crm1.projects().get(projectId=PROJECT).execute()
    assert (p["projectId"], p["projectNumber"], p["lifecycleState"]) == (PROJECT, str(NUMBER), "ACTIVE")

    op = run.projects().locations().services().create(
        parent=RUN_PARENT, serviceId="v1view",
        body={"ingress": "INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER",
              "template": {"containers": [{"image": "us-docker.pkg.dev/cloudrun/container/hello"}]}},
    ).execute()
    assert "error" not in wait_lro(run, op)

    run1 = client(emulator, "run.v1.json")
    services = run1.projects().locations().services()
    name = f"{RUN_PARENT}/services/v1view"
    svc = services.get(name=name).execute()
    assert (svc["apiVersion"], svc["kind"]) == ("serving.knative.dev/v1", "Service")
    assert svc["metadata"]["annotations"]["run.googleapis.com/ingress"] == "internal-and-cloud-load-balancing"
    assert svc["status"]["conditions"][0] == {**svc["status"]["conditions"][0], "type": "Ready", "status": "True"}

    svc["metadata"]["annotations"]["run.googleapis.com/ingress"] = "all"
    replaced = services.replaceService(name=name, body=svc).execute()
    assert replaced["metadata"]["generation"] == 2
    assert run.projects().locations().services().get(name=name).execute()["ingress"] == "INGRESS_TRAFFIC_ALL"

    listed = services.list(parent=f"projects/{PROJECT}/locations/-").execute()
    assert "v1view" in [s["metadata"]["name"] for s in listed["items"]]

    policy = services.getIamPolicy(resource=name).execute()
    assert "etag" in policy

    status = services.delete(name=name).execute()
    assert status["status"] == "Success"
    e = http_error(services.get(name=name))
    assert e.status_code == 404


# ---------------------------------------------------------- Certificate Manager
# Google's GAPIC client (google-cloud-certificate-manager) over its REST
# transport: its own request encoding (numeric enums, FieldMask), its own
# long-running operation polling, its own error mapping.

CM_PARENT = f"projects/{PROJECT}/locations/global"
CM_MAP_ROOT = f"//certificatemanager.googleapis.com/{CM_PARENT}/certificateMaps/"


@pytest.fixture(scope="session")
def certmgr(emulator):
    return cm.CertificateManagerClient(
        transport="rest",
        client_options=ClientOptions(api_endpoint=emulator.rstrip("/")),
        credentials=AnonymousCredentials(),
    )


def self_managed(name):
    chain, key = make_chain(name)
    return cm.Certificate.SelfManagedCertificate(pem_certificate=chain, pem_private_key=key)


def error_status(e):
    return e.response.json()["error"]["status"]


def test_certificate_manager_map_entries_and_renewal_in_place(certmgr, compute, emulator):
    cert = certmgr.create_certificate(
        parent=CM_PARENT,
        certificate_id="cm-app",
        certificate=cm.Certificate(
            description="conformance",
            labels={"owner": "gclb-acme"},
            self_managed=self_managed("app.example.com"),
        ),
    ).result(timeout=30)
    assert cert.name == f"{CM_PARENT}/certificates/cm-app"
    assert list(cert.san_dnsnames) == ["app.example.com"]
    assert cert.pem_certificate.startswith("-----BEGIN CERTIFICATE-----")
    assert cert.self_managed.pem_private_key == ""
    got = certmgr.get_certificate(name=cert.name)
    assert got.expire_time.year >= 2026
    assert dict(got.labels) == {"owner": "gclb-acme"}

    # The same id again: 409 ALREADY_EXISTS.
    with pytest.raises(gexc.Conflict) as info:
        certmgr.create_certificate(
            parent=CM_PARENT,
            certificate_id="cm-app",
            certificate=cm.Certificate(self_managed=self_managed("app.example.com")),
        )
    assert info.value.code == 409
    assert error_status(info.value) == "ALREADY_EXISTS"

    # A key that is not the leaf's: 400 INVALID_ARGUMENT.
    other = self_managed("app.example.com")
    with pytest.raises(gexc.BadRequest) as info:
        certmgr.create_certificate(
            parent=CM_PARENT,
            certificate_id="cm-mismatch",
            certificate=cm.Certificate(
                self_managed=cm.Certificate.SelfManagedCertificate(
                    pem_certificate=other.pem_certificate,
                    pem_private_key=self_managed("app.example.com").pem_private_key,
                )
            ),
        )
    assert error_status(info.value) == "INVALID_ARGUMENT"

    cert_map = certmgr.create_certificate_map(
        parent=CM_PARENT,
        certificate_map_id="cm-map",
        certificate_map=cm.CertificateMap(labels={"owner": "gclb-acme"}),
    ).result(timeout=30)
    entry = certmgr.create_certificate_map_entry(
        parent=cert_map.name,
        certificate_map_entry_id="app",
        certificate_map_entry=cm.CertificateMapEntry(
            hostname="app.example.com", certificates=[cert.name]
        ),
    ).result(timeout=30)
    assert entry.certificates == [f"projects/{NUMBER}/locations/global/certificates/cm-app"]
    primary = certmgr.create_certificate_map_entry(
        parent=cert_map.name,
        certificate_map_entry_id="primary",
        certificate_map_entry=cm.CertificateMapEntry(
            matcher=cm.CertificateMapEntry.Matcher.PRIMARY, certificates=[cert.name]
        ),
    ).result(timeout=30)
    assert primary.matcher == cm.CertificateMapEntry.Matcher.PRIMARY
    assert primary.state == cm.ServingState.ACTIVE
    entries = list(certmgr.list_certificate_map_entries(parent=cert_map.name))
    assert sorted(e.name.rsplit("/", 1)[1] for e in entries) == ["app", "primary"]
    listed = list(
        certmgr.list_certificates(request={"parent": CM_PARENT, "filter": "labels.owner=gclb-acme"})
    )
    assert [c.name for c in listed] == [cert.name]

    # The proxy serves from the map.
    um = {"name": "um-cm", "defaultUrlRedirect": {"httpsRedirect": True}}
    wait_global(compute, compute.urlMaps().insert(project=PROJECT, body=um).execute())
    proxy = {
        "name": "thp-cm",
        "urlMap": f"{COMPUTE_LINK}/global/urlMaps/um-cm",
        "certificateMap": CM_MAP_ROOT + "cm-map",
    }
    wait_global(compute, compute.targetHttpsProxies().insert(project=PROJECT, body=proxy).execute())
    e = http_error(
        compute.targetHttpsProxies().setCertificateMap(
            project=PROJECT, targetHttpsProxy="thp-cm", body={"certificateMap": CM_MAP_ROOT + "ghost"}
        )
    )
    assert e.status_code == 404
    wait_global(
        compute,
        compute.targetHttpsProxies()
        .setCertificateMap(
            project=PROJECT, targetHttpsProxy="thp-cm", body={"certificateMap": CM_MAP_ROOT + "cm-map"}
        )
        .execute(),
    )

    # Renewal in place: patch the certificate; the proxy serves the new chain.
    renewed = self_managed("app.example.com")
    patched = certmgr.update_certificate(
        certificate=cm.Certificate(name=cert.name, self_managed=renewed),
        update_mask={"paths": ["self_managed"]},
    ).result(timeout=30)
    assert patched.pem_certificate == renewed.pem_certificate
    import urllib.request

    with urllib.request.urlopen(emulator + "emulator/served?proxy=thp-cm&sni=app.example.com") as r:
        served = json.loads(r.read())
    assert served["source"] == "certificateMap"
    assert served["pem"] == renewed.pem_certificate

    # The certificate is in use: FAILED_PRECONDITION, RESOURCE_STILL_IN_USE.
    with pytest.raises(gexc.BadRequest) as info:
        certmgr.delete_certificate(name=cert.name)
    assert error_status(info.value) == "FAILED_PRECONDITION"
    assert "referenced by a CertificateMapEntry" in info.value.message
    assert info.value.details[0]["violations"][0]["type"] == "RESOURCE_STILL_IN_USE"

    # Operations: get through the operations client, list.
    op = certmgr.update_certificate_map(
        certificate_map=cm.CertificateMap(name=cert_map.name, description="renamed"),
        update_mask={"paths": ["description"]},
    )
    assert op.result(timeout=30).description == "renamed"
    assert op.operation.name.startswith(f"{CM_PARENT}/operations/operation-")
    polled = certmgr.get_operation(request={"name": op.operation.name})
    assert polled.done
    names = [o.name for o in certmgr.list_operations(request={"name": CM_PARENT}).operations]
    assert op.operation.name in names

    # An injected operation fault surfaces as the client's error from result().
    post(emulator + "emulator/faults", {
        "method": "certificatemanager.projects.locations.certificates.create",
        "kind": "operation", "status": 503, "count": 1,
    })
    with pytest.raises(gexc.ServiceUnavailable):
        certmgr.create_certificate(
            parent=CM_PARENT,
            certificate_id="cm-faulty",
            certificate=cm.Certificate(self_managed=self_managed("app.example.com")),
        ).result(timeout=30)
    with pytest.raises(gexc.NotFound):
        certmgr.get_certificate(name=f"{CM_PARENT}/certificates/cm-faulty")

    # Tear down in order: detach is refused without sslCertificates, so the
    # proxy goes first; entries, then the map and the certificate.
    wait_global(
        compute, compute.targetHttpsProxies().delete(project=PROJECT, targetHttpsProxy="thp-cm").execute()
    )
    for e in entries:
        certmgr.delete_certificate_map_entry(name=e.name).result(timeout=30)
    certmgr.delete_certificate_map(name=cert_map.name).result(timeout=30)
    certmgr.delete_certificate(name=cert.name).result(timeout=30)
    with pytest.raises(gexc.NotFound):
        certmgr.get_certificate_map(name=cert_map.name)
