# Sourced by deploy/backup.sh and deploy/restore.sh: DALABA_DATABASE_URL and DALABA_DATA_DIR
# from the environment, or else from /etc/dalaba/dalaba.env (DALABA_ENV_FILE names another
# file), read as KEY=value lines (no shell evaluation); checks that the database is PostgreSQL
# and sets url, data_dir and libpq_url. The caller defines die().
env_file=${DALABA_ENV_FILE:-/etc/dalaba/dalaba.env}
if [ -r "$env_file" ]; then
  while IFS= read -r line || [ -n "$line" ]; do
    case "$line" in
      DALABA_DATABASE_URL=* | DALABA_DATA_DIR=*) ;;
      *) continue ;;
    esac
    key=${line%%=*} value=${line#*=}
    value=${value%\"} value=${value#\"} value=${value%\'} value=${value#\'}
    [ -n "${!key:-}" ] || export "$key=$value"
  done <"$env_file"
fi

url=${DALABA_DATABASE_URL:-}
data_dir=${DALABA_DATA_DIR:-}
[ -n "$url" ] || die "DALABA_DATABASE_URL is not set (nor in $env_file)"
[ -n "$data_dir" ] || die "DALABA_DATA_DIR is not set (nor in $env_file)"
case "$url" in
  postgresql://* | postgresql+*://* | postgres://*) ;;
  *) die "DALABA_DATABASE_URL is not PostgreSQL: these scripts are for PostgreSQL installs" ;;
esac
# SQLAlchemy's postgresql+psycopg:// is libpq's postgresql://
libpq_url=$(printf '%s' "$url" | sed -E 's#^postgres(ql)?(\+[A-Za-z0-9_]+)?://#postgresql://#')
