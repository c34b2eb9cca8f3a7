#!/bin/bash
# The `topics` service of docker-compose.yml (apache/kafka image): creates every topic containd
# reads or writes, since the broker's auto-create is off, then loads the sample inventory.
# Idempotent (--if-not-exists; inventory records are upserts by key), so `docker compose up`
# can run it again. The names follow examples/containd.toml (the config baked into the image);
# scripts/check-observability checks that each topic named there is created here.
set -euo pipefail

bootstrap=${BOOTSTRAP_SERVERS:-kafka:9092}
bin=${KAFKA_BIN:-/opt/kafka/bin}
seed=${SEED_FILE:-/seed/identities.jsonl}
tab=$'\t'

for _ in $(seq 1 60); do
  if "$bin/kafka-topics.sh" --bootstrap-server "$bootstrap" --list >/dev/null 2>&1; then break; fi
  sleep 2
done

create() { # name partitions [--config k=v ...]
  local name=$1 partitions=$2
  shift 2
  "$bin/kafka-topics.sh" --bootstrap-server "$bootstrap" --create --if-not-exists \
    --topic "$name" --partitions "$partitions" --replication-factor 1 "$@"
}

# Signals in: keyed by subject, so one identity's signals (and its state) stay in one partition.
create identity.signals.v1 6
# Per-subject state: compacted, at least as many partitions as the widest input topic.
create containd.state.v1 6 --config cleanup.policy=compact
# Outputs.
create containment.decisions.v1 6
create containment.dead-letter.v1 6
# Held commands and verdicts: one partition, a log (a hold and its verdict share a key).
create containment.approvals.v1 1
# The NHI inventory: compacted, keyed by identity id.
create identity.inventory.v1 1 --config cleanup.policy=compact
# One command topic per [[targets]] entry.
for target in okta agent-gateway aws kubernetes active-directory github-actions cyberark isac; do
  create "containment.commands.$target.v1" 6
done

# The sample inventory, keyed by identity id (each record's leading "id" field).
if [ -f "$seed" ]; then
  while IFS= read -r line || [ -n "$line" ]; do
    [ -z "${line//[[:space:]]/}" ] && continue
    if [[ $line =~ ^\{[[:space:]]*\"id\"[[:space:]]*:[[:space:]]*\"([^\"]+)\" ]]; then
      printf '%s\t%s\n' "${BASH_REMATCH[1]}" "$line"
    else
      echo "create-topics: inventory line without a leading \"id\": $line" >&2
      exit 1
    fi
  done <"$seed" |
    "$bin/kafka-console-producer.sh" --bootstrap-server "$bootstrap" --topic identity.inventory.v1 \
      --property parse.key=true --property "key.separator=$tab"
  echo "create-topics: loaded the sample inventory onto identity.inventory.v1"
fi
echo "create-topics: done"
