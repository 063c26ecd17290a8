#!/usr/bin/env bash
# First contact as a newcomer: an ordinary user (made for the purpose), a PATH without go, promtool,
# docker-compose, docker and chromium, empty caches, a fresh clone of this checkout; `make run`
# must complete, then a second clone must run warm. Prints both wall times and where the time went.
# Needs root (to create the user); everything the user runs is unprivileged.
# Usage: sudo tests/benchmarks/first_contact.sh [USER]   (default user: slmforge-newcomer; removed at the end
#        unless KEEP_USER=1; COLD_ONLY=1 stops after the cold run)
set -euo pipefail
REPO="$(cd "$(dirname "$0")/../.." && pwd)"
USER_NAME="${1:-slmforge-newcomer}"
[[ "$(id -u)" == 0 ]] || { echo "run as root: it creates the user $USER_NAME" >&2; exit 1; }

id "$USER_NAME" >/dev/null 2>&1 || useradd --create-home --shell /bin/bash "$USER_NAME"
HOME_DIR="$(getent passwd "$USER_NAME" | cut -d: -f6)"
cleanup() {
  [[ "${KEEP_USER:-0}" == 1 ]] && return
  # userdel refuses while any of the user's processes run (su's session, a tether still winding down
  # after make returned): stop them first, then wait for them to be gone.
  pkill -KILL -u "$USER_NAME" 2>/dev/null || true
  for _ in 1 2 3 4 5 6 7 8 9 10; do pgrep -u "$USER_NAME" >/dev/null || break; sleep 1; done
  userdel --remove "$USER_NAME" 2>/dev/null \
    || echo "first_contact: could not remove the user $USER_NAME; remove it with: userdel --remove $USER_NAME" >&2
}
trap cleanup EXIT

# A PATH of links to every program this machine has, except the validators' tools: the main job
# must not need them.
SAFE_BIN="$HOME_DIR/bin-without-validators"
mkdir -p "$SAFE_BIN"
for dir in /usr/local/bin /usr/bin /bin; do
  for program in "$dir"/*; do
    name="$(basename "$program")"
    case "$name" in go|gofmt|promtool|docker|docker-compose|chromium|chromium-browser|apt|apt-get|sudo) continue ;; esac
    [[ -e "$SAFE_BIN/$name" ]] || ln -s "$program" "$SAFE_BIN/$name"
  done
done
chown -R "$USER_NAME" "$SAFE_BIN"

# The user's own copy of this checkout (committed state), as `git clone` gives a newcomer.
git -C "$REPO" bundle create "$HOME_DIR/slmforge.bundle" HEAD >/dev/null 2>&1
chown "$USER_NAME" "$HOME_DIR/slmforge.bundle"

run_as_user() {  # run_as_user CLONE_DIR
  su - "$USER_NAME" -c "set -e; export PATH='$SAFE_BIN'; for t in go promtool docker-compose chromium; do \
    ! command -v \$t >/dev/null || { echo \"\$t is on the PATH\"; exit 1; }; done; \
    rm -rf '$1'; git clone -q '$HOME_DIR/slmforge.bundle' '$1'; cd '$1'; \
    /usr/bin/time -f 'wall %e s, peak RSS of the largest step %M KB' make run"
}

echo "== cold: user $USER_NAME (uid $(id -u "$USER_NAME")), empty caches, PATH without validators"
start=$SECONDS
run_as_user "$HOME_DIR/slmforge" 2>&1 | tee "$HOME_DIR/cold.log" | grep -E '^\[setup\]|^package|^wall|not validated|Error|error' || true
cold=$((SECONDS - start))
grep -q "MLflow run:" "$HOME_DIR/cold.log" \
  || { echo "FAILED: the cold run did not finish (log: $HOME_DIR/cold.log; KEEP_USER=1 keeps it)" >&2; exit 1; }
echo "cold make run: $((cold / 60)) min $((cold % 60)) s"
[[ "${COLD_ONLY:-0}" == 1 ]] && exit 0  # COLD_ONLY=1: the fresh machine's figure alone
echo "== warm: a second clone, caches full"
start=$SECONDS
run_as_user "$HOME_DIR/slmforge-second" 2>&1 | tee "$HOME_DIR/warm.log" | grep -E '^\[setup\]|^package|^wall|not validated|Error|error' || true
warm=$((SECONDS - start))
grep -q "MLflow run:" "$HOME_DIR/warm.log" \
  || { echo "FAILED: the warm run did not finish (log: $HOME_DIR/warm.log; KEEP_USER=1 keeps it)" >&2; exit 1; }
echo "cold make run: $((cold / 60)) min $((cold % 60)) s; warm make run: $((warm / 60)) min $((warm % 60)) s"
