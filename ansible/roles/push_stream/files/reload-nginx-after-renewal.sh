#!/bin/sh
# certbot runs this after every certificate it renewed (renewal-hooks/deploy/):
# nginx reloads gracefully - new workers serve the new certificate, the old
# workers' subscribers reconnect to them and catch up by Last-Event-ID. Only if
# nginx accepts the config with the new files; otherwise the running nginx keeps
# the old certificate and certbot reports the hook's failure.
# Installed by the push_stream role (realtime-glue).
set -eu
systemctl is-active --quiet nginx.service || exit 0
nginx -t -q
systemctl reload nginx.service
