"""Drives the gcp-emulator with the real Google Cloud CLI (`gcloud`): a client
nobody here wrote, so the emulator cannot merely agree with our own code.

The walkthrough's commands run exactly as written there (create, describe, list,
the IAP binding, the clean-up), plus the listing and update commands an
operator uses and Cloud DNS records. gcloud is isolated in its own config
directory: an access-token file, every API endpoint overridden to the emulator,
and the emulator as gcloud's HTTP proxy, so that a request to any other host
(Cloud Run's regional `REGION-run.googleapis.com`, becoming
`REGION-127.0.0.1:PORT` under an override) still lands on the emulator, on
loopback. Every command runs with `--log-http`; the last test asserts that every
URL gcloud logged is the emulator's and that the emulator saw every request.

Run through gcloud.sh, which builds the emulator and sets EMULATOR_BIN. Without
gcloud every test fails, saying how to install it.
"""

import datetime
import json
import os
import pathlib
import re
import shutil
import socket
import subprocess
import urllib.request

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

PROJECT = "demo-project"
NUMBER = 123456789012
REGION = "europe-west1"
USER_EMAIL = "operator@example.com"
DOMAIN = "iap.example.com"
INSTALL_HINT = (
    "gcloud is missing: install the Google Cloud CLI (Debian/Ubuntu: add Google's "
    "apt repository, https://cloud.google.com/sdk/docs/install#deb, then "
    "`apt-get install google-cloud-cli`; scripts/test does this)"
)

# Every URL gcloud logged over the whole run, and how many API requests the
# suite itself sent the emulator directly.
LOGGED_URLS = []
DIRECT_CALLS = [0]
GCLOUD_RUNS = [0]


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
        raise RuntimeError("EMULATOR_BIN is not set: run through gcloud.sh")
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
    yield addr
    proc.terminate()
    proc.wait(timeout=10)


def api(emulator, method, path, body=None):
    """A direct call to the emulator (seeding, and checking what gcloud did)."""
    if not path.startswith("emulator/"):
        DIRECT_CALLS[0] += 1
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(f"http://{emulator}/{path}", data=data, method=method)
    req.add_header("content-type", "application/json")
    with urllib.request.urlopen(req, timeout=30) as r:
        text = r.read().decode()
    return json.loads(text) if text else None


class Gcloud:
    """Runs gcloud in an isolated configuration pointed at the emulator."""

    def __init__(self, emulator, home):
        self.emulator = emulator
        self.home = home
        config = home / "config"
        config.mkdir()
        token = home / "token"
        token.write_text("emulator-token\n")
        base = f"http://{emulator}/"
        host, port = emulator.rsplit(":", 1)
        self.env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(home),
            "LANG": "C.UTF-8",
            "CLOUDSDK_CONFIG": str(config),
            "CLOUDSDK_CORE_DISABLE_PROMPTS": "1",
            # Anything that still asks for the metadata server asks the emulator's.
            "GCE_METADATA_HOST": emulator,
            "GCE_METADATA_IP": emulator,
            "NO_GCE_CHECK": "True",
        }
        for key, value in [
            ("auth/access_token_file", str(token)),
            ("core/project", PROJECT),
            ("core/account", USER_EMAIL),
            ("core/disable_usage_reporting", "true"),
            ("core/check_gce_metadata", "false"),
            ("component_manager/disable_update_check", "true"),
            ("survey/disable_prompts", "true"),
            ("api_endpoint_overrides/compute", base + "compute/v1/"),
            ("api_endpoint_overrides/dns", base + "dns/v1/"),
            ("api_endpoint_overrides/run", base),
            ("api_endpoint_overrides/iap", base),
            ("api_endpoint_overrides/cloudresourcemanager", base),
            ("api_endpoint_overrides/serviceusage", base),
            ("api_endpoint_overrides/certificatemanager", base),
            # The emulator is also the proxy: regional Cloud Run hosts
            # (`europe-west1-127.0.0.1:PORT`) reach it without a name lookup.
            ("proxy/type", "http"),
            ("proxy/address", host),
            ("proxy/port", port),
        ]:
            self.run("config", "set", key, value, log=False)

    def run(self, *args, ok=True, log=True):
        """gcloud ARGS... --log-http; returns (exit code, stdout, stderr)."""
        argv = ["gcloud", *args]
        if log:
            argv.append("--log-http")
        p = subprocess.run(argv, env=self.env, capture_output=True, text=True, timeout=300)
        GCLOUD_RUNS[0] += 1
        if log:
            LOGGED_URLS.extend(re.findall(r"^uri: (\S+)", p.stderr, re.M))
        if ok and p.returncode != 0:
            errors = [l for l in p.stderr.splitlines() if "ERROR" in l or "WARNING" in l]
            pytest.fail(f"gcloud {' '.join(args)} failed ({p.returncode}): {errors}\n{p.stderr[-4000:]}")
        return p.returncode, p.stdout, p.stderr

    def out(self, *args):
        return self.run(*args)[1]

    def json(self, *args):
        return json.loads(self.out(*args, "--format=json"))


@pytest.fixture(scope="session")
def gcloud(emulator, tmp_path_factory):
    if shutil.which("gcloud") is None:
        pytest.fail(INSTALL_HINT)
    return Gcloud(emulator, tmp_path_factory.mktemp("gcloud"))


@pytest.fixture(scope="session")
def certs(tmp_path_factory):
    """cert.pem / key.pem as certbot leaves them, and a second pair (a renewal)."""
    d = tmp_path_factory.mktemp("certs")
    out = []
    for i in (1, 2):
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, DOMAIN)])
        now = datetime.datetime.now(datetime.timezone.utc)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=90))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(DOMAIN)]), critical=False)
            .sign(key, hashes.SHA256())
        )
        cp, kp = d / f"cert{i}.pem", d / f"key{i}.pem"
        cp.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        kp.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        out.append((str(cp), str(kp)))
    return out


# --- The walkthrough, in its order ------------------------------------------------

def test_project_id_from_config(gcloud):
    # PROJECT_ID=$(gcloud config list project --format='value(core.project)')
    assert gcloud.out("config", "list", "project", "--format=value(core.project)").strip() == PROJECT


def test_cloud_run_service(emulator, gcloud):
    # `gcloud run deploy --source .` is a build, which cannot be emulated: the
    # service is seeded through the v2 API with what the deploy sets (ingress
    # internal-and-cloud-load-balancing), then looked at and updated by gcloud.
    op = api(
        emulator,
        "POST",
        f"v2/projects/{PROJECT}/locations/{REGION}/services?serviceId=cloud-run-iap",
        {
            "ingress": "INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER",
            "template": {"containers": [{"image": f"{REGION}-docker.pkg.dev/{PROJECT}/cloud-run-source-deploy/cloud-run-iap"}]},
        },
    )
    api(emulator, "POST", f"v2/{op['name']}:wait", {"timeout": "10s"})
    svc = gcloud.json("run", "services", "describe", "cloud-run-iap", "--region", REGION, "--project", PROJECT)
    assert svc["metadata"]["name"] == "cloud-run-iap"
    assert svc["metadata"]["annotations"]["run.googleapis.com/ingress"] == "internal-and-cloud-load-balancing"
    assert svc["metadata"]["labels"]["cloud.googleapis.com/location"] == REGION
    # The deploy's flags, applied again by `services update` (what an operator
    # runs to fix a service deployed with the wrong ingress).
    gcloud.run("run", "services", "update", "cloud-run-iap", "--region", REGION,
               "--ingress", "all")
    assert gcloud.json("run", "services", "describe", "cloud-run-iap", "--region", REGION)[
        "metadata"]["annotations"]["run.googleapis.com/ingress"] == "all"
    gcloud.run("run", "services", "update", "cloud-run-iap", "--region", REGION,
               "--ingress", "internal-and-cloud-load-balancing")
    v2 = api(emulator, "GET", f"v2/projects/{PROJECT}/locations/{REGION}/services/cloud-run-iap")
    assert v2["ingress"] == "INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER"
    assert v2["generation"] == "3"


def test_create_the_neg(gcloud):
    gcloud.run("compute", "network-endpoint-groups", "create", "cloud-run-iap-neg",
               "--project", PROJECT, f"--region={REGION}",
               "--network-endpoint-type=serverless",
               "--cloud-run-service=cloud-run-iap")


def test_create_the_backend_service(gcloud):
    gcloud.run("compute", "backend-services", "create", "cloud-run-iap-backend",
               "--load-balancing-scheme=EXTERNAL", "--global")


def test_add_the_neg_to_the_backend_service(emulator, gcloud):
    gcloud.run("compute", "backend-services", "add-backend", "cloud-run-iap-backend",
               "--global", "--network-endpoint-group=cloud-run-iap-neg",
               f"--network-endpoint-group-region={REGION}")
    bs = api(emulator, "GET", f"compute/v1/projects/{PROJECT}/global/backendServices/cloud-run-iap-backend")
    assert bs["backends"][0]["group"] == (
        f"https://www.googleapis.com/compute/v1/projects/{PROJECT}/regions/{REGION}/networkEndpointGroups/cloud-run-iap-neg")


def test_create_the_url_map(gcloud):
    gcloud.run("compute", "url-maps", "create", "cloud-run-iap-url-map",
               "--default-service", "cloud-run-iap-backend")


def test_reserve_the_ip_and_list_it(gcloud):
    gcloud.run("compute", "addresses", "create", "cloud-run-iap-ip",
               "--network-tier=PREMIUM", "--ip-version=IPV4", "--global")
    listed = gcloud.out("compute", "addresses", "list", "--filter", "cloud-run-iap-ip")
    assert "cloud-run-iap-ip" in listed, listed


def test_dns_record_for_the_domain(gcloud):
    # "Update your dns records such as DOMAIN_ADDRESS to point to this ip address."
    ip = gcloud.out("compute", "addresses", "describe", "cloud-run-iap-ip", "--global",
                    "--format=value(address)").strip()
    assert ip
    gcloud.run("dns", "managed-zones", "create", "example-zone", "--dns-name=example.com.",
               "--description=walkthrough zone")
    gcloud.run("dns", "record-sets", "create", f"{DOMAIN}.", "--zone=example-zone",
               "--type=A", "--ttl=300", f"--rrdatas={ip}")
    rrs = gcloud.json("dns", "record-sets", "list", "--zone=example-zone")
    assert {"name": f"{DOMAIN}.", "type": "A", "rrdatas": [ip]}.items() <= {
        k: v for r in rrs if r["type"] == "A" for k, v in r.items()}.items()
    # certbot's manual DNS-01 challenge: a TXT record, then its removal.
    gcloud.run("dns", "record-sets", "create", f"_acme-challenge.{DOMAIN}.", "--zone=example-zone",
               "--type=TXT", "--ttl=60", '--rrdatas="challenge-token"')
    txt = gcloud.json("dns", "record-sets", "describe", f"_acme-challenge.{DOMAIN}.",
                      "--zone=example-zone", "--type=TXT")
    assert txt["rrdatas"] == ['"challenge-token"']
    gcloud.run("dns", "record-sets", "update", f"{DOMAIN}.", "--zone=example-zone",
               "--type=A", "--ttl=60", f"--rrdatas={ip}")
    gcloud.run("dns", "record-sets", "delete", f"_acme-challenge.{DOMAIN}.",
               "--zone=example-zone", "--type=TXT")
    names = {(r["name"], r["type"]) for r in gcloud.json("dns", "record-sets", "list", "--zone=example-zone")}
    assert (f"_acme-challenge.{DOMAIN}.", "TXT") not in names
    assert (f"{DOMAIN}.", "A") in names


def test_upload_the_certificate(gcloud, certs, tmp_path):
    cert, key = certs[0]
    # The walkthrough runs it where certbot left cert.pem and key.pem.
    shutil.copy(cert, tmp_path / "cert.pem")
    shutil.copy(key, tmp_path / "key.pem")
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        gcloud.run("compute", "ssl-certificates", "create", "cloud-run-iap-cert",
                   "--certificate", "cert.pem", "--private-key", "key.pem")
    finally:
        os.chdir(cwd)
    c = gcloud.json("compute", "ssl-certificates", "describe", "cloud-run-iap-cert")
    assert c["subjectAlternativeNames"] == [DOMAIN]
    assert "privateKey" not in json.dumps(c)


def test_create_the_https_proxy(gcloud):
    gcloud.run("compute", "target-https-proxies", "create", "cloud-run-iap-http-proxy",
               "--ssl-certificates", "cloud-run-iap-cert", "--url-map", "cloud-run-iap-url-map")


def test_create_the_forwarding_rule(gcloud):
    gcloud.run("compute", "forwarding-rules", "create", "cloud-run-iap-forwarding-rule",
               "--load-balancing-scheme=EXTERNAL", "--network-tier=PREMIUM",
               "--address=cloud-run-iap-ip", "--global", "--ports", "443",
               "--target-https-proxy", "cloud-run-iap-http-proxy")


def test_grant_iap_access(emulator, gcloud):
    # BACKEND_SERVICE=$(gcloud compute backend-services list --filter="name~'cloud-run-iap-backend'" --format="value(name)")
    backend = gcloud.out("compute", "backend-services", "list",
                         "--filter=name~'cloud-run-iap-backend'", "--format=value(name)").strip()
    assert backend == "cloud-run-iap-backend"
    # USER_EMAIL=$(gcloud config list account --format "value(core.account)")
    email = gcloud.out("config", "list", "account", "--format", "value(core.account)").strip()
    assert email == USER_EMAIL
    gcloud.run("iap", "web", "add-iam-policy-binding", "--resource-type=backend-services",
               "--service", backend, f"--member=user:{email}",
               "--role=roles/iap.httpsResourceAccessor")
    policy = api(emulator, "POST",
                 f"v1/projects/{NUMBER}/iap_web/compute/services/{backend}:getIamPolicy", {})
    assert {"role": "roles/iap.httpsResourceAccessor", "members": [f"user:{email}"]} in policy["bindings"]
    # Read back through gcloud, and a second binding on the same policy (etag round trip).
    got = gcloud.json("iap", "web", "get-iam-policy", "--resource-type=backend-services",
                      "--service", backend)
    assert got["bindings"] == policy["bindings"]
    gcloud.run("iap", "web", "add-iam-policy-binding", "--resource-type=backend-services",
               "--service", backend, "--member=group:team@example.com",
               "--role=roles/iap.httpsResourceAccessor")
    gcloud.run("iap", "web", "remove-iam-policy-binding", "--resource-type=backend-services",
               "--service", backend, "--member=group:team@example.com",
               "--role=roles/iap.httpsResourceAccessor")


# --- What an operator runs: listings and updates ----------------------------------

@pytest.mark.parametrize("collection,name", [
    ("network-endpoint-groups", "cloud-run-iap-neg"),
    ("backend-services", "cloud-run-iap-backend"),
    ("url-maps", "cloud-run-iap-url-map"),
    ("addresses", "cloud-run-iap-ip"),
    ("ssl-certificates", "cloud-run-iap-cert"),
    ("target-https-proxies", "cloud-run-iap-http-proxy"),
    ("forwarding-rules", "cloud-run-iap-forwarding-rule"),
])
def test_list_shows_the_resource(gcloud, collection, name):
    # Without a scope flag gcloud calls aggregatedList.
    names = [r["name"] for r in gcloud.json("compute", collection, "list")]
    assert names == [name]


def test_operations_list(gcloud):
    ops = gcloud.json("compute", "operations", "list")
    targets = {o["targetLink"].rsplit("/", 1)[1] for o in ops}
    assert {"cloud-run-iap-backend", "cloud-run-iap-neg", "cloud-run-iap-forwarding-rule"} <= targets
    assert all(o["status"] == "DONE" for o in ops), ops


def test_run_services_list_and_describe(gcloud):
    listed = gcloud.json("run", "services", "list")
    assert [s["metadata"]["name"] for s in listed] == ["cloud-run-iap"]
    assert gcloud.out("run", "services", "list", "--region", REGION,
                      "--format=value(metadata.name)").split() == ["cloud-run-iap"]
    url = gcloud.out("run", "services", "describe", "cloud-run-iap", "--region", REGION,
                     "--format=value(status.url)").strip()
    assert url.startswith("https://cloud-run-iap-") and url.endswith(".a.run.app")


def test_run_services_iam_binding(gcloud):
    # IAP invokes Cloud Run as its service agent, which must exist first.
    out = gcloud.run("beta", "services", "identity", "create", "--service=iap.googleapis.com",
                     "--project", PROJECT)[2]
    assert "service-123456789012@gcp-sa-iap.iam.gserviceaccount.com" in out, out
    gcloud.run("run", "services", "add-iam-policy-binding", "cloud-run-iap", "--region", REGION,
               "--member=serviceAccount:service-123456789012@gcp-sa-iap.iam.gserviceaccount.com",
               "--role=roles/run.invoker")
    pol = gcloud.json("run", "services", "get-iam-policy", "cloud-run-iap", "--region", REGION)
    assert pol["bindings"] == [{
        "role": "roles/run.invoker",
        "members": ["serviceAccount:service-123456789012@gcp-sa-iap.iam.gserviceaccount.com"],
    }]


def test_backend_service_updates_whatever_the_fingerprint(emulator, gcloud):
    # gcloud sends a fingerprint back URL-safe encoded; one with `+` or `/` in
    # Google's rendering used to fail with 412 "Invalid fingerprint". Update until
    # one such fingerprint has gone through (about a third of them).
    seen = []
    for i in range(40):
        fp = api(emulator, "GET",
                 f"compute/v1/projects/{PROJECT}/global/backendServices/cloud-run-iap-backend")["fingerprint"]
        seen.append(fp)
        gcloud.run("compute", "backend-services", "update", "cloud-run-iap-backend",
                   "--global", f"--description=round {i}")
        if "+" in fp or "/" in fp:
            break
    assert any("+" in f or "/" in f for f in seen), seen
    gcloud.run("compute", "backend-services", "update", "cloud-run-iap-backend", "--global",
               "--iap=enabled,oauth2-client-id=client-id,oauth2-client-secret=client-secret")
    iap = gcloud.json("compute", "backend-services", "describe", "cloud-run-iap-backend", "--global")["iap"]
    assert iap["enabled"] is True and iap["oauth2ClientId"] == "client-id"
    assert "oauth2ClientSecret" not in iap


def test_url_map_and_proxy_updates(gcloud, certs):
    gcloud.run("compute", "url-maps", "set-default-service", "cloud-run-iap-url-map",
               "--default-service", "cloud-run-iap-backend", "--global")
    gcloud.run("compute", "url-maps", "add-path-matcher", "cloud-run-iap-url-map",
               "--path-matcher-name=api", "--default-service=cloud-run-iap-backend",
               f"--new-hosts={DOMAIN}", "--global")
    um = gcloud.json("compute", "url-maps", "describe", "cloud-run-iap-url-map", "--global")
    assert um["hostRules"] == [{"hosts": [DOMAIN], "pathMatcher": "api"}]
    # The renewal swap an operator does by hand: a new certificate, then the proxy.
    cert, key = certs[1]
    gcloud.run("compute", "ssl-certificates", "create", "cloud-run-iap-cert-2",
               "--certificate", cert, "--private-key", key, "--global")
    gcloud.run("compute", "target-https-proxies", "update", "cloud-run-iap-http-proxy",
               "--ssl-certificates", "cloud-run-iap-cert-2", "--global")
    proxy = gcloud.json("compute", "target-https-proxies", "describe", "cloud-run-iap-http-proxy", "--global")
    assert [c.rsplit("/", 1)[1] for c in proxy["sslCertificates"]] == ["cloud-run-iap-cert-2"]
    gcloud.run("-q", "compute", "ssl-certificates", "delete", "cloud-run-iap-cert")
    gcloud.run("compute", "ssl-certificates", "create", "cloud-run-iap-cert",
               "--certificate", certs[0][0], "--private-key", certs[0][1])
    gcloud.run("compute", "target-https-proxies", "update", "cloud-run-iap-http-proxy",
               "--ssl-certificates", "cloud-run-iap-cert")
    gcloud.run("-q", "compute", "ssl-certificates", "delete", "cloud-run-iap-cert-2", "--global")


def test_a_certificate_in_use_cannot_be_deleted(gcloud):
    code, _, err = gcloud.run("-q", "compute", "ssl-certificates", "delete", "cloud-run-iap-cert", ok=False)
    assert code != 0
    assert "is already being used by" in err, err


# --- Certificate Manager: a certificate map on the proxy instead ----------------------

def test_certificate_manager_map_on_the_proxy_and_renewal_in_place(emulator, gcloud, certs):
    (c1, k1), (c2, k2) = certs
    gcloud.run("certificate-manager", "certificates", "create", "iap-cm-cert",
               f"--certificate-file={c1}", f"--private-key-file={k1}")
    cert = gcloud.json("certificate-manager", "certificates", "describe", "iap-cm-cert")
    assert cert["sanDnsnames"] == [DOMAIN]
    assert "PRIVATE KEY" not in json.dumps(cert)
    gcloud.run("certificate-manager", "maps", "create", "iap-cm-map")
    gcloud.run("certificate-manager", "maps", "entries", "create", "iap-cm-entry",
               "--map=iap-cm-map", "--certificates=iap-cm-cert", f"--hostname={DOMAIN}")
    entries = gcloud.json("certificate-manager", "maps", "entries", "list", "--map=iap-cm-map")
    assert [e["hostname"] for e in entries] == [DOMAIN]

    # The proxy serves from the map (Compute's setCertificateMap), then the
    # certificate is renewed in place.
    gcloud.run("compute", "target-https-proxies", "update", "cloud-run-iap-http-proxy",
               "--certificate-map=iap-cm-map")
    proxy = gcloud.json("compute", "target-https-proxies", "describe", "cloud-run-iap-http-proxy")
    assert proxy["certificateMap"].endswith("/locations/global/certificateMaps/iap-cm-map")
    gcloud.run("certificate-manager", "certificates", "update", "iap-cm-cert",
               f"--certificate-file={c2}", f"--private-key-file={k2}")
    renewed = gcloud.json("certificate-manager", "certificates", "describe", "iap-cm-cert")
    assert renewed["pemCertificate"].strip() == pathlib.Path(c2).read_text().strip()
    served = api(emulator, "GET",
                 f"emulator/served?proxy=cloud-run-iap-http-proxy&sni={DOMAIN}")
    assert served["source"] == "certificateMap"
    assert served["pem"] == renewed["pemCertificate"]

    # A certificate an entry uses cannot be deleted.
    code, _, err = gcloud.run("-q", "certificate-manager", "certificates", "delete", "iap-cm-cert",
                              ok=False)
    assert code != 0
    assert "referenced by a CertificateMapEntry" in err, err

    # Back to sslCertificates, then everything Certificate Manager goes.
    gcloud.run("compute", "target-https-proxies", "update", "cloud-run-iap-http-proxy",
               "--clear-certificate-map")
    assert "certificateMap" not in gcloud.json(
        "compute", "target-https-proxies", "describe", "cloud-run-iap-http-proxy")
    gcloud.run("-q", "certificate-manager", "maps", "entries", "delete", "iap-cm-entry",
               "--map=iap-cm-map")
    gcloud.run("-q", "certificate-manager", "maps", "delete", "iap-cm-map")
    gcloud.run("-q", "certificate-manager", "certificates", "delete", "iap-cm-cert")
    assert gcloud.json("certificate-manager", "certificates", "list") == []
    assert gcloud.json("certificate-manager", "maps", "list") == []


# --- Cleaning up, exactly as the walkthrough does ------------------------------------

def test_clean_up(emulator, gcloud):
    for cmd in [
        "-q compute forwarding-rules delete cloud-run-iap-forwarding-rule --global",
        "-q compute target-https-proxies delete cloud-run-iap-http-proxy",
        "-q compute url-maps delete cloud-run-iap-url-map",
        "-q compute backend-services delete cloud-run-iap-backend --global",
        f"-q compute network-endpoint-groups delete cloud-run-iap-neg --region={REGION}",
        "-q compute ssl-certificates delete cloud-run-iap-cert",
        "-q compute addresses delete cloud-run-iap-ip --global",
        f"-q run services delete cloud-run-iap --region {REGION}",
    ]:
        gcloud.run(*cmd.split())
    for collection in ["forwarding-rules", "target-https-proxies", "url-maps", "backend-services",
                       "network-endpoint-groups", "ssl-certificates", "addresses"]:
        assert gcloud.json("compute", collection, "list") == [], collection
    assert gcloud.json("run", "services", "list") == []
    gcloud.run("-q", "dns", "record-sets", "delete", f"{DOMAIN}.", "--zone=example-zone", "--type=A")
    gcloud.run("-q", "dns", "managed-zones", "delete", "example-zone")


# --- Nothing left the machine ------------------------------------------------------

def test_every_logged_url_is_the_emulators(emulator, gcloud):
    assert len(LOGGED_URLS) > 100, LOGGED_URLS
    # The emulator's address, or Cloud Run's regional form of it (which gcloud
    # sends through its proxy, the emulator).
    mine = re.compile(r"^http://(?:[a-z]+-[a-z]+[0-9]+-)?" + re.escape(emulator) + "/")
    foreign = [u for u in LOGGED_URLS if not mine.match(u)]
    assert foreign == [], foreign
    regional = [u for u in LOGGED_URLS if u.startswith(f"http://{REGION}-")]
    assert regional, "no regional Cloud Run call was made"
    # And the emulator saw exactly the API requests gcloud logged (plus the
    # suite's own): none went elsewhere unlogged.
    seen = api(emulator, "GET", "emulator/requests")
    assert len(seen) == len(LOGGED_URLS) + DIRECT_CALLS[0], (len(seen), len(LOGGED_URLS), DIRECT_CALLS[0])
    # No request failed unnoticed (gcloud shows some failures as an empty
    # list): the only errors are the one the suite provokes, and Cloud Run's
    # 404 once a deleted service is gone.
    errors = sorted({(r["status"], r["method"], r["id"] or r["path"]) for r in seen if r["status"] >= 400})
    expected = {
        (400, "DELETE", "compute.sslCertificates.delete"),
        (400, "DELETE", "certificatemanager.projects.locations.certificates.delete"),
    }
    gone = {(404, "GET", "run.namespaces.services.get")}
    assert expected <= set(errors) <= expected | gone, errors
    print(f"\ngcloud: {GCLOUD_RUNS[0]} commands, {len(LOGGED_URLS)} requests "
          f"({len(regional)} to Cloud Run's regional host), all to the emulator")
