#!/usr/bin/env bash
# Prints the first TCP port from $1 upwards that nothing on 127.0.0.1 listens on, so that
# test servers never collide with a developer's own servers or another run.
set -euo pipefail
port=${1:?base port}
while (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do
  port=$((port + 1))
done
echo "$port"
