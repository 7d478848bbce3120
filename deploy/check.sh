#!/usr/bin/env bash
# Static checks of the shell scripts and the deployment files:
#   - shellcheck on every shell script of the repository (tracked or new,
#     *.sh and files with a sh/bash shebang such as .ci/run);
#   - yamllint (strict, deploy/.yamllint) on the Kubernetes manifests;
#   - systemd-analyze verify on the systemd unit (any message is a finding),
#     its exposure level (systemd-analyze security --offline), and the
#     sysusers.d entry (systemd-sysusers in a scratch root);
#   - deploy/psync-proxy.conf documents every flag of `psync-proxy --help`.
# Installs what is missing (apt-get), builds build/psync-proxy if it is not
# there (PSYNC_PROXY_BIN=path to use another binary), and exits non-zero on
# any finding.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR
. "$(dirname "$0")/lib.sh"

ensure_packages shellcheck yamllint systemd git

BIN=${PSYNC_PROXY_BIN:-$ROOT/build/psync-proxy}
if [ ! -x "$BIN" ]; then
  echo "==> building $BIN" >&2
  build build Release >&2
fi
BIN=$(realpath "$BIN")

UNIT=$ROOT/deploy/systemd/psync-proxy.service
SYSUSERS=$ROOT/deploy/systemd/psync-proxy.sysusers
CONF=$ROOT/deploy/psync-proxy.conf
K8S=$ROOT/deploy/k8s
# Highest accepted `systemd-analyze security` exposure, in tenths (20 = 2.0).
MAX_EXPOSURE=20

TMP=$(mktemp -d /tmp/psync-check.XXXXXX)
trap 'rm -rf "$TMP"' EXIT

failed=()
finding() {  # finding CHECK: record a failed check
  failed+=("$1")
}

# --- shellcheck -------------------------------------------------------------

# Tracked and untracked (not ignored) files: *.sh, *.bash, and files whose
# first line is a sh/bash/dash/ksh shebang.
shell_scripts() {
  local f first
  while IFS= read -r -d '' f; do
    [ -f "$ROOT/$f" ] || continue
    case "$f" in
      *.sh | *.bash) printf '%s\n' "$f"; continue ;;
    esac
    first=$(head -n 1 -- "$ROOT/$f" 2>/dev/null | tr -d '\000')
    if [[ $first =~ ^\#!.*[/\ ](sh|bash|dash|ksh)([[:space:]]|$) ]]; then
      printf '%s\n' "$f"
    fi
  done < <(git -C "$ROOT" ls-files -z --cached --others --exclude-standard)
}

mapfile -t scripts < <(shell_scripts | sort -u)
echo "==> shellcheck: ${scripts[*]}" >&2
if [ ${#scripts[@]} -eq 0 ]; then
  echo "no shell script found (is $ROOT a git checkout?)" >&2
  finding shellcheck
# -x -P SCRIPTDIR: follow `. "$(dirname "$0")/lib.sh"`.
elif ! (cd "$ROOT" && shellcheck -x -P SCRIPTDIR -- "${scripts[@]}"); then
  finding shellcheck
fi

# --- yamllint ---------------------------------------------------------------

echo "==> yamllint: deploy/k8s" >&2
if ! (cd "$ROOT" && yamllint --strict -c deploy/.yamllint deploy/k8s); then
  finding yamllint
fi

# --- systemd ----------------------------------------------------------------

# The unit starts /usr/local/bin/psync-proxy, which verify wants to exist:
# verify a copy (same file name) that starts the binary just built.
echo "==> systemd-analyze verify: ${UNIT#"$ROOT"/}" >&2
mkdir -p "$TMP/unit"
sed "s#^ExecStart=/usr/local/bin/psync-proxy #ExecStart=$BIN #" "$UNIT" > "$TMP/unit/psync-proxy.service"
if ! grep -q "^ExecStart=$BIN " "$TMP/unit/psync-proxy.service"; then
  echo "${UNIT#"$ROOT"/}: no 'ExecStart=/usr/local/bin/psync-proxy ...' line" >&2
  finding systemd-analyze
else
  # verify exits 0 on unknown keys and bad values: any message is a finding.
  out=$(cd "$TMP/unit" && systemd-analyze verify ./psync-proxy.service 2>&1) || out="${out:-verify failed}"
  if [ -n "$out" ]; then
    printf '%s\n' "$out" >&2
    finding systemd-analyze
  fi
  if ! out=$(cd "$TMP/unit" && systemd-analyze security --offline=yes \
               --threshold="$MAX_EXPOSURE" ./psync-proxy.service 2>&1); then
    printf '%s\n' "$out" >&2
    echo "exposure level above $((MAX_EXPOSURE / 10)).$((MAX_EXPOSURE % 10)) (or an error)" >&2
    finding systemd-security
  else
    printf '%s\n' "$out" | grep 'Overall exposure' >&2 || true
  fi
fi

echo "==> systemd-sysusers: ${SYSUSERS#"$ROOT"/}" >&2
mkdir -p "$TMP/sysroot/etc"
if ! systemd-sysusers --root="$TMP/sysroot" "$SYSUSERS" >/dev/null 2>"$TMP/sysusers.err" ||
   ! grep -q '^psync-proxy:' "$TMP/sysroot/etc/passwd"; then
  cat "$TMP/sysusers.err" >&2
  finding systemd-sysusers
fi

# --- the example config file ------------------------------------------------

# Names of the flags in --help, without dashes (help, version and config are
# not options of the file).
"$BIN" --help | sed -nE 's/^ +(-[a-zA-Z],)?--([a-z][a-z0-9-]*).*/\2/p' |
  grep -vxE 'help|version|config' | sort -u > "$TMP/flags"

echo "==> ${CONF#"$ROOT"/}: every flag of $BIN --help" >&2
conf_missing=()
while IFS= read -r name; do
  # Set (`name value`) or shown commented out (`# name value`).
  grep -qE "^(# )?$name( |$)" "$CONF" || conf_missing+=("$name")
done < "$TMP/flags"
if [ ${#conf_missing[@]} -gt 0 ]; then
  echo "${CONF#"$ROOT"/}: not documented: ${conf_missing[*]}" >&2
  finding config-file
fi

# Once the binary reads config files (--config in --help), every option set
# in the example file and in the Kubernetes ConfigMap must be a flag.
if "$BIN" --help | grep -qE '^ +--config'; then
  echo "==> option names in ${CONF#"$ROOT"/} and the ConfigMaps are flags" >&2
  {
    sed -nE 's/^([a-z][a-z0-9-]*)( .*)?$/\1 deploy\/psync-proxy.conf/p' "$CONF"
    for f in "$K8S"/*.yaml; do
      awk -v f="${f#"$ROOT"/}" '
        /^ +psync-proxy\.conf: \|/ { inblock = 1; indent = -1; next }
        inblock {
          match($0, /^ */)
          if ($0 !~ /^ *$/ && indent < 0) indent = RLENGTH
          if ($0 !~ /^ *$/ && RLENGTH < indent) { inblock = 0; next }
          line = substr($0, indent + 1)
          if (line ~ /^[a-z][a-z0-9-]*( |$)/) { split(line, w, " "); print w[1], f }
        }' "$f"
    done
  } > "$TMP/names"
  while read -r name where; do
    if ! grep -qx -- "$name" "$TMP/flags"; then
      echo "$where: '$name' is not a flag of $BIN" >&2
      finding config-names
    fi
  done < "$TMP/names"
fi

# ----------------------------------------------------------------------------

if [ ${#failed[@]} -gt 0 ]; then
  echo "==> check FAILED: ${failed[*]}" >&2
  exit 1
fi
echo "==> all deployment checks passed" >&2
