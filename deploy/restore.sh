#!/usr/bin/env bash
# Restore a dalaba backup made by deploy/backup.sh into a fresh database and data folder.
#
#   deploy/restore.sh BACKUP_FOLDER
#
# DALABA_DATABASE_URL names the target database: it must exist and be empty, e.g.
#   sudo -u postgres createdb -O dalaba dalaba
# DALABA_DATA_DIR names the target data folder: missing or empty. The database records
# audio files relative to the data folder, so it may be another path than the backup's. Both are taken from the environment, or else from /etc/dalaba/dalaba.env
# (DALABA_ENV_FILE names another file). Stop the dalaba services first; run it as the dalaba
# user (or chown -R dalaba: the folder afterwards), then start them again.
set -euo pipefail
umask 027

die() { echo "restore.sh: $*" >&2; exit 1; }

[ $# -eq 1 ] || die "usage: restore.sh BACKUP_FOLDER"
backup=$1
[ -f "$backup/database.dump" ] && [ -f "$backup/data.tar" ] && [ -f "$backup/SHA256SUMS" ] \
  || die "$backup is not a dalaba backup (database.dump, data.tar, SHA256SUMS)"

# shellcheck source=deploy/dalaba-env.sh
. "$(dirname "$0")/dalaba-env.sh"

# Check everything before changing anything.
(cd "$backup" && sha256sum --check --quiet SHA256SUMS) || die "checksums do not match: $backup is damaged"
tables=$(psql "$libpq_url" -XtAc "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind IN ('r', 'p', 'S', 'v', 'm') AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%' AND n.nspname NOT LIKE 'pg_temp%'")
[ "$tables" = "0" ] || die "the target database is not empty ($tables tables, sequences or views): restore into a fresh one"
if [ -e "$data_dir" ] && [ -n "$(ls -A "$data_dir")" ]; then
  die "the data folder $data_dir is not empty: restore into a fresh one"
fi

pg_restore --no-owner --no-acl --exit-on-error --single-transaction \
  --dbname="$libpq_url" "$backup/database.dump"
mkdir -p "$data_dir"
tar --extract --file="$backup/data.tar" --directory="$data_dir"
echo "restored $backup into the database and $data_dir"
