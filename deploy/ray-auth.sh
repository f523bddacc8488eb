# Sourced by the deploy scripts: Ray's token authentication, with one token shared by
# every node and by gnomon. RAY_AUTH_TOKEN holds the token, or RAY_AUTH_TOKEN_PATH names a
# file holding it (a compose or Kubernetes secret); either turns token auth on here.
# RAY_AUTH_MODE=disabled, set on every node, runs without (a trusted private network only).
case "${RAY_AUTH_MODE:-token}" in
  disabled) ;;
  token)
    if [ -n "${RAY_AUTH_TOKEN:-}" ]; then
      :
    elif [ -n "${RAY_AUTH_TOKEN_PATH:-}" ]; then
      if [ ! -r "$RAY_AUTH_TOKEN_PATH" ] || [ ! -s "$RAY_AUTH_TOKEN_PATH" ]; then
        echo "$(basename "$0"): RAY_AUTH_TOKEN_PATH names $RAY_AUTH_TOKEN_PATH, which is missing, unreadable or empty" >&2
        exit 2
      fi
    else
      echo "$(basename "$0"): set RAY_AUTH_TOKEN (or RAY_AUTH_TOKEN_PATH) to the cluster's token, the same on every node (make one with: ray get-auth-token --generate), or RAY_AUTH_MODE=disabled on a trusted network" >&2
      exit 2
    fi
    export RAY_AUTH_MODE=token
    ;;
  *)
    echo "$(basename "$0"): RAY_AUTH_MODE is '$RAY_AUTH_MODE'; use token (with RAY_AUTH_TOKEN) or disabled" >&2
    exit 2
    ;;
esac
