"""HTTPS across the cluster: every push node serves its own name with a
certificate the test ACME CA (pebble, on the acme node) issued after a real
http-01 validation, speaks HTTP/2, sends HSTS and redirects plain HTTP; certbot's
timer is armed to renew. Nothing here trusts anything but pebble's current root,
fetched from its management API."""

from __future__ import annotations

import socket

from cryptography import x509
from cryptography.x509.oid import NameOID


def handshake(node):
    context = node.tls.client_context()
    context.set_alpn_protocols(["h2", "http/1.1"])
    sock = socket.create_connection((node.host, node.tls_port), timeout=10)
    return context.wrap_socket(sock, server_hostname=node.tls.name)


def test_every_push_node_serves_its_name_with_an_acme_certificate_over_http2(push_nodes):
    for node in push_nodes:
        with handshake(node) as tls:  # verifies the chain to pebble's root and the name
            # nchan: HTTP/1.1 only (push_stream_tls_http2 is off for nchan).
            assert tls.selected_alpn_protocol() == ("h2" if node.flavour == "push_stream" else "http/1.1")
            certificate = x509.load_der_x509_certificate(tls.getpeercert(binary_form=True))
        issuer = certificate.issuer.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
        names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        print(f"{node.name}: {node.tls.name}, issued by {issuer}, until {certificate.not_valid_after_utc}")
        assert issuer.startswith("Pebble Intermediate CA")
        assert names.get_values_for_type(x509.DNSName) == [node.tls.name]


def test_the_page_sends_hsts_and_plain_http_redirects_except_acme_challenges(push_nodes):
    for node in push_nodes:
        status, headers, _ = node.request("GET", "/")
        assert status == 200
        assert headers["Strict-Transport-Security"].startswith("max-age=")
        status, headers, _ = node.request("GET", "/?channel=demo", listener="plain")
        assert (status, headers["Location"]) == (301, f"https://{node.host}/?channel=demo")
        # The CA's challenges stay in plain HTTP (a token that does not exist: 404, not a redirect).
        assert node.request("GET", "/.well-known/acme-challenge/none", listener="plain")[0] == 404


def test_certbot_renews_by_its_timer_and_reloads_nginx_by_its_hook(push_nodes):
    for node in push_nodes:
        host = node.host_entry
        assert host.run("systemctl is-active certbot.timer").stdout.strip() == "active"
        assert (
            host.run("test -x /etc/letsencrypt/renewal-hooks/deploy/realtime-glue-reload-nginx").returncode
            == 0
        )
        renewal = host.run("cat /etc/letsencrypt/renewal/realtime-glue-push.conf").stdout
        assert "authenticator = webroot" in renewal and "server = https://" in renewal
        environment = host.run("systemctl show -p Environment --value certbot.service").stdout
        assert "REQUESTS_CA_BUNDLE=" in environment
