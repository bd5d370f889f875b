#!/usr/bin/env bash
# Prepares Tenant B: the service principal certsync signs in as, its Microsoft Graph permissions (admin consent) and,
# optionally, the Privileged Authentication Administrator directory role.
#
#   federated (default, no secret):  infra/scripts/setup-tenant-b.sh --app-id <app id from create-federated-app.sh>
#   client secret:                   infra/scripts/setup-tenant-b.sh --client-secret [--display-name certsync]
#                                      [--secret-file ./tenant-b-client-secret.txt] [--secret-months 12]
#   either, plus:                    --privileged-auth-admin
#
# Run signed in to Tenant B (az login --tenant <Tenant B id> --allow-no-subscriptions) as a Privileged Role
# Administrator or Global Administrator. Idempotent: what exists is reused, what is granted is left alone.
#
# Federated: the app is the multi-tenant app registered in Tenant A (create-federated-app.sh), whose federated
# credential trusts the Function App's managed identity; this script creates its service principal (enterprise
# application) in Tenant B and grants that. Microsoft Entra does not accept Tenant A's managed identity token for an
# app registered in Tenant B (AADSTS700236), which is why the app is not created here in this mode.
# Client secret: the app is registered here, single-tenant, with a client secret written to --secret-file (mode 600,
# never printed). A secret is only created when that file does not exist yet; older secrets stay valid until they
# expire (list them: az ad app credential list --id <app id>).
#
# Microsoft Graph application permissions (README "Permissions"):
#   GroupMember.Read.All  read the members of the target groups
#   User.ReadWrite.All    read users and write their authorizationInfo.certificateUserIds
#   Group.Read.All        create Graph change-notification subscriptions on the target groups
# --privileged-auth-admin assigns the Privileged Authentication Administrator directory role to the service principal.
# Microsoft documents that updating certificateUserIds may need it (it guards authentication data of every user,
# administrators included); whether an application needs it besides User.ReadWrite.All is not documented clearly.
# It is a highly privileged role: assign it only if a write fails with 403 (certsync's error says so) and keep the app's
# credential (here: the managed identity) as protected as a Global Administrator's.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"

# Privileged Authentication Administrator: the built-in role's template id (the same in every tenant).
PRIVILEGED_AUTHENTICATION_ADMINISTRATOR="7be44c8a-adaf-4e2a-84d6-ab2649e08a13"

usage() {
  sed -n '5,9p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit "$1"
}

mode="federated"
app_id=""
display_name="certsync"
secret_file="./tenant-b-client-secret.txt"
secret_months=12
privileged_auth_admin=false

while [ $# -gt 0 ]; do
  case "$1" in
    --app-id) app_id="${2:?--app-id needs a value}"; shift 2 ;;
    --client-secret) mode="client-secret"; shift ;;
    --display-name) display_name="${2:?--display-name needs a value}"; shift 2 ;;
    --secret-file) secret_file="${2:?--secret-file needs a value}"; shift 2 ;;
    --secret-months) secret_months="${2:?--secret-months needs a value}"; shift 2 ;;
    --privileged-auth-admin) privileged_auth_admin=true; shift ;;
    --help | -h) usage 0 ;;
    *) log "unknown argument: $1"; usage 2 ;;
  esac
done

require_az
tenant_b="$(signed_in_tenant)"
log "signed in to tenant $tenant_b: this must be Tenant B (TENANT_B_ID)"

if [ "$mode" = "federated" ]; then
  [ -n "$app_id" ] || die "give --app-id (the multi-tenant app create-federated-app.sh made in Tenant A), or --client-secret"
  if az ad app show --id "$app_id" --query appId -o tsv >/dev/null 2>&1; then
    die "app $app_id is registered in this tenant: a federated credential trusting Tenant A's managed identity cannot work on it (AADSTS700236). Use the multi-tenant app from create-federated-app.sh, or --client-secret."
  fi
  log "federated mode: app $app_id is registered in another tenant (Tenant A), as it must be"
else
  # The app registration, in this tenant, single-tenant.
  app_id="$(ensure_app_registration "$app_id" "$display_name" AzureADMyOrg)"
  require_graph_permissions "$app_id" GroupMember.Read.All User.ReadWrite.All Group.Read.All
fi

# The service principal (enterprise application) the app signs in as in this tenant.
sp_id="$(ensure_service_principal "$app_id")"

# Admin consent: app role assignments on Microsoft Graph.
grant_graph_permissions "$sp_id" GroupMember.Read.All User.ReadWrite.All Group.Read.All

if [ "$privileged_auth_admin" = true ]; then
  existing="$(az rest --method GET \
    --url "$GRAPH_URL/roleManagement/directory/roleAssignments?%24filter=principalId%20eq%20'$sp_id'%20and%20roleDefinitionId%20eq%20'$PRIVILEGED_AUTHENTICATION_ADMINISTRATOR'" \
    --query 'value[0].id' -o tsv)"
  if [ -n "$existing" ]; then
    log "Privileged Authentication Administrator: already assigned to $sp_id"
  else
    log "Privileged Authentication Administrator: assigning to service principal $sp_id (directory-wide)"
    az rest --method POST \
      --url "$GRAPH_URL/roleManagement/directory/roleAssignments" \
      --headers "Content-Type=application/json" \
      --body "{\"principalId\":\"$sp_id\",\"roleDefinitionId\":\"$PRIVILEGED_AUTHENTICATION_ADMINISTRATOR\",\"directoryScopeId\":\"/\"}" \
      --output none
  fi
fi

if [ "$mode" = "client-secret" ]; then
  if [ -s "$secret_file" ]; then
    log "$secret_file exists: no new secret created (delete the file to create one)"
  else
    end_date="$(date -u -d "+$secret_months months" +%Y-%m-%dT%H:%M:%SZ)"
    log "creating a client secret valid until $end_date, written to $secret_file (mode 600)"
    (
      umask 077
      az ad app credential reset --id "$app_id" --append --display-name "certsync $(date -u +%F)" \
        --end-date "$end_date" --query password -o tsv >"$secret_file"
    )
    log "deploy with:"
    log "  export CERTSYNC_TENANT_B_CLIENT_SECRET=\"\$(cat $secret_file)\" CERTSYNC_TENANT_B_CLIENT_SECRET_EXPIRES_ON=$end_date"
    log "then delete $secret_file: the secret lives in Key Vault only."
  fi
fi

log "done. TENANT_B_ID (tenantBId) is $tenant_b; TENANT_B_CLIENT_ID (tenantBClientId) is $app_id"
printf '%s\n' "$app_id"
