# shellcheck shell=bash
# Helpers shared by the scripts in infra/scripts (sourced, not run). Needs bash and the Azure CLI (`az`), as in Azure
# Cloud Shell. Every Microsoft Graph call goes through `az rest`, signed in as the person running the script.

GRAPH_APP_ID="00000003-0000-0000-c000-000000000000" # Microsoft Graph's application id, the same in every tenant
# Microsoft Graph endpoint: the public cloud unless CERTSYNC_GRAPH_URL names a national cloud's
# (https://graph.microsoft.us/v1.0, https://microsoftgraph.chinacloudapi.cn/v1.0).
GRAPH_URL="${CERTSYNC_GRAPH_URL:-https://graph.microsoft.com/v1.0}"

# The script's name, for messages.
SCRIPT_NAME="$(basename "$0" .sh)"

# Progress goes to stderr, so functions can print their result on stdout.
log() { printf '%s: %s\n' "$SCRIPT_NAME" "$*" >&2; }
die() {
  printf '%s: error: %s\n' "$SCRIPT_NAME" "$*" >&2
  exit 1
}

require_az() {
  command -v az >/dev/null 2>&1 || die "the Azure CLI (az) is required (Azure Cloud Shell has it)"
  az account show --query tenantId -o tsv >/dev/null 2>&1 || die "not signed in: run az login --tenant <tenant id>"
}

# Runs a command up to 5 times, 10 s apart: a directory object just created can take a moment to replicate.
retry() {
  local attempt
  for attempt in 1 2 3 4; do
    "$@" && return 0
    log "retrying in 10 s (attempt $attempt failed; new directory objects take a moment to replicate)"
    sleep 10
  done
  "$@"
}

signed_in_tenant() { az account show --query tenantId -o tsv; }

# Reads one output of a resource-group deployment of infra/main.bicep.
deployment_output() { # <resource group> <deployment name> <output name>
  local value
  value="$(az deployment group show -g "$1" -n "$2" --query "properties.outputs.$3.value" -o tsv)" ||
    die "cannot read deployment '$2' in resource group '$1' (signed in to the right subscription?)"
  [ -n "$value" ] || die "deployment '$2' in resource group '$1' has no output '$3'"
  printf '%s\n' "$value"
}

# Object id of Microsoft Graph's service principal in the signed-in tenant.
graph_service_principal_id() { az ad sp show --id "$GRAPH_APP_ID" --query id -o tsv; }

# Id of a Microsoft Graph *application* permission (an app role allowed for applications), looked up by its value.
graph_app_role_id() { # <permission, e.g. User.Read.All>
  local id
  id="$(az ad sp show --id "$GRAPH_APP_ID" \
    --query "appRoles[?value=='$1' && contains(allowedMemberTypes, 'Application')].id | [0]" -o tsv)"
  [ -n "$id" ] || die "Microsoft Graph has no application permission named $1"
  printf '%s\n' "$id"
}

# Grants Microsoft Graph application permissions to a service principal (admin consent), skipping those it has.
# POST /servicePrincipals/{Graph}/appRoleAssignedTo needs a Privileged Role Administrator (or Global Administrator).
grant_graph_permissions() { # <service principal object id> <permission>...
  local principal_id="$1" graph_sp existing permission role_id
  local -a role_ids=()
  shift
  # Resolve every name first, so a typo grants nothing.
  for permission in "$@"; do
    role_ids+=("$(graph_app_role_id "$permission")")
  done
  graph_sp="$(graph_service_principal_id)"
  existing="$(retry az rest --method GET \
    --url "$GRAPH_URL/servicePrincipals/$principal_id/appRoleAssignments" \
    --query "value[?resourceId=='$graph_sp'].appRoleId" -o tsv)"
  for permission in "$@"; do
    role_id="${role_ids[0]}"
    role_ids=("${role_ids[@]:1}")
    if grep -qxF "$role_id" <<<"$existing"; then
      log "Microsoft Graph $permission: already granted"
      continue
    fi
    log "Microsoft Graph $permission: granting (app role $role_id)"
    az rest --method POST \
      --url "$GRAPH_URL/servicePrincipals/$graph_sp/appRoleAssignedTo" \
      --headers "Content-Type=application/json" \
      --body "{\"principalId\":\"$principal_id\",\"resourceId\":\"$graph_sp\",\"appRoleId\":\"$role_id\"}" \
      --output none
  done
}

# Lists Microsoft Graph application permissions among an app registration's required permissions (what a consent
# screen shows), adding only the missing ones. Granting is separate (grant_graph_permissions, in the tenant that uses it).
require_graph_permissions() { # <application (client) id> <permission>...
  local app_id="$1" listed permission role_id
  shift
  listed="$(az ad app show --id "$app_id" \
    --query "requiredResourceAccess[?resourceAppId=='$GRAPH_APP_ID'].resourceAccess[].id" -o tsv)"
  for permission in "$@"; do
    role_id="$(graph_app_role_id "$permission")"
    if grep -qxF "$role_id" <<<"$listed"; then
      log "app $app_id lists Microsoft Graph $permission already"
      continue
    fi
    log "app $app_id: adding Microsoft Graph $permission to its required permissions"
    az ad app permission add --id "$app_id" --api "$GRAPH_APP_ID" --api-permissions "$role_id=Role" --output none
  done
}

# Object id of an application's service principal in the signed-in tenant, created if missing.
ensure_service_principal() { # <application (client) id>
  local sp_id
  sp_id="$(az ad sp list --filter "appId eq '$1'" --query '[0].id' -o tsv)"
  if [ -n "$sp_id" ]; then
    log "service principal of app $1 exists: $sp_id"
  else
    log "creating the service principal (enterprise application) of app $1 in this tenant"
    sp_id="$(retry az ad sp create --id "$1" --query id -o tsv)"
  fi
  printf '%s\n' "$sp_id"
}

# Application (client) id of an app registration in the signed-in tenant: the given id if it exists, else the one app
# named <display name>, else a new one with <sign-in audience>. Refuses to guess between several apps of one name.
ensure_app_registration() { # <application id or ""> <display name> <sign-in audience>
  local app_id="$1" display_name="$2" audience="$3" matches count
  if [ -n "$app_id" ]; then
    az ad app show --id "$app_id" --query appId -o tsv >/dev/null || die "no app registration $app_id in this tenant"
    log "using app registration $app_id"
  else
    matches="$(az ad app list --filter "displayName eq '$display_name'" --query '[].appId' -o tsv)"
    count="$(grep -c . <<<"$matches" || true)"
    if [ "$count" -gt 1 ]; then
      die "$count app registrations are named '$display_name': pass --app-id"
    elif [ "$count" -eq 1 ]; then
      app_id="$matches"
      log "app registration '$display_name' exists: $app_id"
    else
      log "creating the app registration '$display_name' ($audience)"
      app_id="$(az ad app create --display-name "$display_name" --sign-in-audience "$audience" --query appId -o tsv)"
    fi
  fi
  printf '%s\n' "$app_id"
}
