#!/bin/bash
# Builds realtime-glue/vagrant-node:bookworm, the image the Vagrantfile's docker
# provider boots for every cluster machine (tests/image/vagrant-node/Dockerfile),
# FROM the Debian 12 systemd base image (`make base-image` builds that first). Skipped
# when the image exists and was built from the same recipe and base; REBUILD=1 forces it.
set -euo pipefail
cd "$(dirname "$0")/../.."

image=${CLUSTER_IMAGE:-realtime-glue/vagrant-node:bookworm}
base=${BASE_IMAGE:-$(tests/image/build-base.sh --name bookworm)}
key=${VAGRANT_PUBLIC_KEY:-$(ls /usr/share/rubygems-integration/all/gems/vagrant-*/keys/vagrant.pub 2>/dev/null | tail -n 1)}
if [ ! -s "$key" ]; then
    echo "cluster-image: Vagrant's insecure public key not found (apt-get install vagrant)" >&2
    exit 1
fi

# The recipe: this script, the Dockerfile, the key and the base image's id.
recipe=$(cat "$0" tests/image/vagrant-node/Dockerfile "$key" <(docker image inspect -f '{{.Id}}' "$base") \
    | sha256sum | cut -c1-12)
if [ "${REBUILD:-0}" != 1 ] && \
    [ "$(docker image inspect -f '{{ index .Config.Labels "recipe" }}' "$image" 2>/dev/null)" = "$recipe" ]; then
    echo "cluster-image: $image exists (recipe $recipe); nothing to do"
    exit 0
fi

context=$(mktemp -d)
trap 'rm -rf "$context"' EXIT
cp tests/image/vagrant-node/Dockerfile "$context/"
cp "$key" "$context/vagrant.pub"
echo "cluster-image: building $image from $base"
docker build -q --build-arg BASE_IMAGE="$base" --label recipe="$recipe" -t "$image" "$context"
echo "cluster-image: $image ready"
