"""The metrics endpoint with a web configuration (TLS and basic auth), under
the real, hardened rupost-agent.service of node1: its seccomp filter,
capabilities and read-only /etc are those of a production node.

node1's agent is given `web: config_file:` naming a file in the
exporter-toolkit format, with a certificate made in the box and a bcrypt
hash made by the box's own libcrypt. Then over loopback: HTTPS without
credentials is 401 with a Basic challenge, the right password is 200 with
the exposition, a wrong one and an unknown user are 401, plain HTTP gets no
HTTP answer; and a reload that breaks the web file keeps the one in force.
"""

import pytest

NODE = "node1"
WEB_DIR = "/etc/rupost/test-web"
URL = "https://127.0.0.1:9469/metrics"
USER, PASSWORD = "prometheus", "scrape-Secret-1"

# Run in the box: the hash of argv[1] by the box's libcrypt (bcrypt, cost 10).
BCRYPT = r"""
import crypt, sys, warnings
warnings.simplefilter("ignore")
print(crypt.crypt(sys.argv[1], crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=1 << 10)))
"""


def curl(cluster, *args):
    """HTTP status of a scrape from inside node1 ("000": no HTTP answer)."""
    res = cluster.exec(NODE, "curl", "-sk", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "5", *args,
                       check=False)
    return res.stdout.strip()


@pytest.fixture(scope="module")
def secured(cluster):
    if not cluster.agent_expected():
        pytest.skip("no rupost-agent .deb was given to nodebox up, so there is no agent to test")
    cluster.exec(NODE, "sh", "-c",
                 f"mkdir -p {WEB_DIR} && cd {WEB_DIR} && "
                 "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 "
                 "-subj /CN=node1 -keyout key.pem -out cert.pem 2>/dev/null && chmod 600 key.pem")
    bcrypt = cluster.exec(NODE, "python3", "-c", BCRYPT, PASSWORD).stdout.strip()
    assert bcrypt.startswith("$2b$10$"), bcrypt
    web = ("tls_server_config:\n"
           "  cert_file: cert.pem\n"
           "  key_file: key.pem\n"
           "basic_auth_users:\n"
           f"  {USER}: '{bcrypt}'\n")
    cluster.exec(NODE, "sh", "-c", f"cat > {WEB_DIR}/web.yml", input=web)
    config = cluster.exec(NODE, "cat", "/etc/rupost/agent.yaml").stdout
    secured_config = config.replace('web:\n  listen_address: "0.0.0.0:9469"\n',
                                    f'web:\n  listen_address: "0.0.0.0:9469"\n  config_file: {WEB_DIR}/web.yml\n')
    assert secured_config != config, config
    try:
        with cluster.agent_config(NODE, secured_config):
            cluster.wait_for("node1 serving HTTPS", lambda: curl(cluster, URL) == "401", timeout=20)
            yield web
    finally:
        cluster.exec(NODE, "rm", "-rf", WEB_DIR, check=False)
    cluster.wait_for("node1 serving plain HTTP again", lambda: curl(
        cluster, "http://127.0.0.1:9469/metrics") == "200", timeout=20)


def test_credentials_are_required(cluster, secured):
    res = cluster.exec(NODE, "curl", "-sk", "-D", "-", "-o", "/dev/null", URL)
    assert res.stdout.startswith("HTTP/1.1 401"), res.stdout
    assert 'WWW-Authenticate: Basic realm="rupost-agent"' in res.stdout, res.stdout
    assert curl(cluster, "-u", f"{USER}:wrong", URL) == "401"
    assert curl(cluster, "-u", f"nobody:{PASSWORD}", URL) == "401"
    # Plain HTTP to the TLS port gets no HTTP answer at all.
    assert curl(cluster, "http://127.0.0.1:9469/metrics") == "000"


def test_right_password_scrapes(cluster, secured):
    body = cluster.exec(NODE, "curl", "-sfk", "-u", f"{USER}:{PASSWORD}", URL).stdout
    assert 'rupost_probe_success{probe="smtp",type="smtp"}' in body, body[:500]
    # Cached after the first check: a burst of scrapes all succeed.
    codes = {curl(cluster, "-u", f"{USER}:{PASSWORD}", URL) for _ in range(10)}
    assert codes == {"200"}, codes


def test_broken_web_config_on_reload_keeps_the_one_in_force(cluster, secured):
    cluster.exec(NODE, "sh", "-c", f"cat > {WEB_DIR}/web.yml", input=secured.replace("key_file", "key_flie"))
    # The unit's ExecReload checks the configuration first: the web file's
    # error is refused there, and the agent keeps serving as before.
    res = cluster.exec(NODE, "systemctl", "reload", "rupost-agent.service", check=False)
    assert res.returncode != 0
    journal = cluster.exec(NODE, "journalctl", "-u", "rupost-agent.service", "-n", "30", "--no-pager").stdout
    assert "web.yml:3:3: tls_server_config.key_flie: unknown key" in journal, journal
    assert cluster.exec(NODE, "systemctl", "is-active", "rupost-agent.service", check=False).stdout.strip() == "active"
    assert curl(cluster, "-u", f"{USER}:{PASSWORD}", URL) == "200"
    cluster.exec(NODE, "sh", "-c", f"cat > {WEB_DIR}/web.yml", input=secured)
