#!/bin/bash
# `make up`: the test cluster of the Vagrantfile on the docker provider, with a
# demo producer on the glue node; prints where the live page is.
# Expects what `make deps repo` gives (ansible in .venv on PATH, packaging/out/repo).
# Re-running converges the running cluster again and restarts the producer.
set -euo pipefail
cd "$(dirname "$0")/../.."

inventory=.vagrant/provisioners/ansible/inventory/vagrant_ansible_inventory
say() { printf '\n==> %s\n' "$*"; }

say "docker engine and images"
tests/scripts/docker-engine.sh start
tests/image/build-base.sh
tests/image/build-vagrant-node.sh

say "vagrant up (provider docker; ansible: ansible/playbooks/site.yml)"
# --no-parallel: the ansible provisioner, on the last machine, reaches every
# machine; one after the other, they are all up when it runs.
vagrant up --provider=docker --no-parallel --provision

say "demo producer on the glue node (systemd unit realtime-glue-demo)"
vagrant upload tests/cluster/producer.py /tmp/realtime-glue-demo-producer queue >/dev/null
vagrant ssh queue -c 'sudo sh -ec "
    install -m 0755 /tmp/realtime-glue-demo-producer /usr/local/bin/realtime-glue-demo-producer
    systemctl stop realtime-glue-demo.service 2>/dev/null || true
    systemctl reset-failed realtime-glue-demo.service 2>/dev/null || true
    systemd-run --quiet --unit=realtime-glue-demo --property=User=realtime-glue \
        --property=Restart=always --property=RestartSec=2 \
        /usr/bin/python3 /usr/local/bin/realtime-glue-demo-producer --demo
"'

# Names and addresses, from the inventory Vagrant generated (fixed addresses).
mapfile -t push < <(ansible-inventory -i "$inventory" --list | python3 -c '
import json, sys
inv = json.load(sys.stdin)
for host in sorted(inv["push"]["hosts"]):
    variables = inv["_meta"]["hostvars"][host]
    print(variables["ansible_host"], (variables.get("push_stream_tls_names") or [""])[0])
')
acme=$(ansible-inventory -i "$inventory" --list | python3 -c '
import json, sys
inv = json.load(sys.stdin)
print(inv["_meta"]["hostvars"][inv["acme_ca"]["hosts"][0]]["ansible_host"])
')
read -r address1 name1 <<<"${push[0]}"
read -r address2 name2 <<<"${push[1]}"
flavour=$(vagrant ssh push1 -c 'grep -q push_stream_module /etc/nginx/nginx.conf && echo push_stream || echo nchan' 2>/dev/null | tr -d '\r')
# pebble's root as of now (it makes a new one whenever it restarts).
curl -sSf --cacert build/cluster/acme-server-ca.pem "https://$acme:15000/roots/0" -o build/cluster/acme-root.pem

cat <<INFO

realtime-glue cluster is up (push node flavour: $flavour).

  Live page:  https://$name1/?channel=demo&channels=news,sports,weather
              (or on the other push node: https://$name2/?channel=demo ; add &transport=ws for WebSocket)
              $name1 is $address1 and $name2 is $address2: names only the test CA's DNS
              knows, with certificates from the test ACME CA (pebble, on $acme). To open
              the page here, trust its root and map the names:
    certutil -d sql:\$HOME/.pki/nssdb -A -t C,, -n realtime-glue-test-ca -i build/cluster/acme-root.pem
    chromium --host-resolver-rules="MAP $name1 $address1, MAP $name2 $address2" "https://$name1/?channel=demo"
  Producer:   realtime-glue-demo.service on the glue node puts a comment a second on "demo",
              a few more on news, sports, weather.

  Publish a message (through Redis and the glue to every push node):
    vagrant ssh queue -c "sudo -u realtime-glue realtime-glue enqueue demo '{\"channel\":\"demo\",\"event\":\"comment\",\"data\":{\"text\":\"hello\"}}'"
  Watch a channel from here:
    curl -N --cacert build/cluster/acme-root.pem --resolve $name1:443:$address1 -H 'Accept: text/event-stream' https://$name1/ev/demo
  Queue status:               vagrant ssh queue -c 'sudo -u realtime-glue realtime-glue status'
  Tests against it:           make cluster-test
  Remove it all:              make down
INFO
