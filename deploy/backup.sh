#!/usr/bin/env bash
# Back up a dalaba install on PostgreSQL: the database (pg_dump, custom format) and the data
# folder (audio, programs, recordings; tar), into a new folder DEST/dalaba-YYYYmmddTHHMMSSZ
# with SHA256SUMS. deploy/restore.sh puts such a folder back.
#
#   deploy/backup.sh [DEST]          (default: /var/backups/dalaba)
#
# Takes DALABA_DATABASE_URL and DALABA_DATA_DIR from the environment, or else from
# /etc/dalaba/dalaba.env (DALABA_ENV_FILE names another file). Run it as root or as the
# dalaba user, e.g. daily from a systemd timer or cron; the services may keep running: the
# dump is one consistent snapshot, taken before the folder, so every file the database names
# is in the archive (files written after the dump are harmless extras).
set -euo pipefail
umask 077

die() { echo "backup.sh: $*" >&2; exit 1; }

# Only the two variables this script needs, read as KEY=value lines (no shell evaluation).
# shellcheck source=deploy/dalaba-env.sh
. "$(dirname "$0")/dalaba-env.sh"
[ -d "$data_dir" ] || die "the data folder $data_dir does not exist"

dest_root=${1:-/var/backups/dalaba}
mkdir -p "$dest_root"
name="dalaba-$(date -u +%Y%m%dT%H%M%SZ)"
final="$dest_root/$name"
[ ! -e "$final" ] || die "$final exists already"
# Written under a temporary name and renamed when complete: a backup folder is never partial.
work="$dest_root/.$name.partial"
rm -rf "$work"
mkdir "$work"
trap 'rm -rf "$work"' EXIT

pg_dump --format=custom --no-owner --no-acl --file="$work/database.dump" "$libpq_url"

# tar exits 1 when a file changed while it was read (a program rebuilt meanwhile): the
# archive is still good; the database names the version it had at the dump.
status=0
tar --create --file="$work/data.tar" --directory="$data_dir" \
  --warning=no-file-changed --warning=no-file-removed . || status=$?
[ "$status" -le 1 ] || die "tar failed ($status)"

(cd "$work" && sha256sum database.dump data.tar >SHA256SUMS)
mv "$work" "$final"
trap - EXIT
echo "$final"
