#!/bin/bash
# Usage: check-tls-certificate.sh --certificate FULLCHAIN --key KEY --name NAME [--name NAME...]
#                                 [--trust CA_FILE | --no-chain] [--min-days DAYS]
#
# Says whether a push node may serve this certificate, before nginx ever sees it:
#   - the key is the certificate's key;
#   - the certificate is valid now and for at least DAYS more days (default 1);
#   - it covers every NAME the node serves;
#   - the file's chain (the node's certificate first, then the intermediates)
#     leads to a CA of CA_FILE (default: the system's, ca-certificates) for
#     TLS servers; --no-chain skips this (an ACME CA's chain, issued by certbot).
# Every problem is one line on stderr and the exit status is 1; a good
# certificate prints one summary line and exits 0. Needs openssl.
# Installed by the push_stream role as /usr/local/sbin/realtime-glue-check-tls-certificate.
set -uo pipefail

certificate= key= trust=/etc/ssl/certs/ca-certificates.crt chain=1 min_days=1
names=()
while [ $# -gt 0 ]; do
    case $1 in
        --certificate) certificate=$2; shift 2 ;;
        --key) key=$2; shift 2 ;;
        --trust) trust=$2; shift 2 ;;
        --no-chain) chain=0; shift ;;
        --name) names+=("$2"); shift 2 ;;
        --name=*) names+=("${1#--name=}"); shift ;;
        --min-days) min_days=$2; shift 2 ;;
        *) echo "check-tls-certificate: unknown argument $1" >&2; exit 2 ;;
    esac
done
if [ -z "$certificate" ] || [ -z "$key" ] || [ ${#names[@]} -eq 0 ]; then
    echo "check-tls-certificate: --certificate, --key and at least one --name are required" >&2
    exit 2
fi

problems=()
problem() { problems+=("$*"); }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# The node's certificate (the first in the file) and what follows it.
if ! awk -v dir="$work" '
    /-----BEGIN CERTIFICATE-----/ { n++; out = dir "/" (n == 1 ? "leaf.pem" : "chain.pem") }
    out { print >> out }
    /-----END CERTIFICATE-----/ { out = "" }
    END { exit n == 0 }' "$certificate" 2>/dev/null \
    || ! openssl x509 -noout -in "$work/leaf.pem" 2>/dev/null; then
    echo "$certificate: no PEM certificate in it" >&2
    exit 1
fi
leaf=$work/leaf.pem

if ! openssl pkey -in "$key" -pubout -out "$work/key.pub" 2>/dev/null; then
    problem "$key: not a readable private key (PEM, unencrypted)"
elif ! cmp -s "$work/key.pub" <(openssl x509 -in "$leaf" -noout -pubkey); then
    problem "$key does not match the certificate in $certificate (another key pair)"
fi

not_before=$(openssl x509 -in "$leaf" -noout -startdate | cut -d= -f2)
not_after=$(openssl x509 -in "$leaf" -noout -enddate | cut -d= -f2)
if [ "$(date -d "$not_before" +%s)" -gt "$(date +%s)" ]; then
    problem "$certificate is not valid yet (from $not_before)"
fi
if ! openssl x509 -in "$leaf" -noout -checkend 0 >/dev/null; then
    problem "$certificate has expired ($not_after)"
elif ! openssl x509 -in "$leaf" -noout -checkend $((min_days * 86400)) >/dev/null; then
    problem "$certificate expires within $min_days day(s) ($not_after)"
fi

for name in "${names[@]}"; do
    if ! openssl x509 -in "$leaf" -noout -checkhost "$name" 2>/dev/null | grep -q " does match "; then
        problem "$certificate does not cover the name $name (it covers: $(openssl x509 -in "$leaf" -noout -ext subjectAltName 2>/dev/null | tail -n +2 | tr -d ' '))"
    fi
done

if [ "$chain" = 1 ]; then
    untrusted=()
    [ -s "$work/chain.pem" ] && untrusted=(-untrusted "$work/chain.pem")
    if ! verified=$(openssl verify -purpose sslserver -no-CApath -CAfile "$trust" "${untrusted[@]}" "$leaf" 2>&1); then
        reason=$(printf '%s\n' "$verified" | grep -m1 '^error' | sed 's/^error [0-9]* at [0-9]* depth lookup: //')
        case $verified in
            *"unable to get local issuer certificate"*|*"unable to get issuer certificate"*)
                problem "$certificate: the chain does not reach a CA of $trust ($reason): an intermediate certificate missing after the node's certificate, or a CA not trusted" ;;
            *) problem "$certificate: the chain does not verify against $trust: ${reason:-$verified}" ;;
        esac
    fi
fi

if [ ${#problems[@]} -gt 0 ]; then
    printf '%s\n' "${problems[@]}" >&2
    exit 1
fi
echo "ok: $(openssl x509 -in "$leaf" -noout -subject) for ${names[*]}, valid until $not_after"
