#!/usr/bin/env bash
# Creates (or reuses) the multi-tenant app registration certsync uses in Tenant B, and its federated identity
# credential trusting the Function App's managed identity: no secret anywhere (TENANT_B_CREDENTIAL=
# federated-managed-identity).
#
#   infra/scripts/create-federated-app.sh [--display-name certsync-tenant-b]        (before deploying: the app only)
#   infra/scripts/create-federated-app.sh --resource-group <rg> [--deployment certsync]   (after: + the credential)
#   infra/scripts/create-federated-app.sh --principal-id <managed identity principal id> [--app-id <existing app id>]
#
# The app's id is the tenantBClientId deployment parameter, and the credential needs the managed identity the
# deployment creates: run it once before deploying (prints the id) and once after (adds the credential).
#
# Run signed in to Tenant A (az login --tenant <Tenant A id>) — the managed identity's tenant — as someone who may
# register applications (Application Developer is enough to create one; Application Administrator to change another's).
# Idempotent: an existing app with that display name and an existing matching credential are reused.
#
# Why Tenant A: Microsoft Entra accepts a managed identity's token as a federated credential only for an app registered
# in the identity's own tenant (an app registered in Tenant B answers AADSTS700236). So the app lives in Tenant A,
# is multi-tenant, and is used in Tenant B through its service principal there: setup-tenant-b.sh creates that
# service principal and grants it the Graph permissions. The app needs no service principal or permission in Tenant A.
#
# The credential: issuer https://login.microsoftonline.com/<Tenant A id>/v2.0, subject = the managed identity's
# principal (object) id, audience api://AzureADTokenExchange (public cloud; --audience for national clouds:
# api://AzureADTokenExchangeUSGov, api://AzureADTokenExchangeChina — and --issuer-host login.microsoftonline.us /
# login.chinacloudapi.cn).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"

usage() {
  sed -n '6,8p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit "$1"
}

principal_id=""
resource_group=""
deployment="certsync"
display_name="certsync-tenant-b"
app_id=""
audience="api://AzureADTokenExchange"
issuer_host="login.microsoftonline.com"
credential_name="certsync-managed-identity"

while [ $# -gt 0 ]; do
  case "$1" in
    --principal-id) principal_id="${2:?--principal-id needs a value}"; shift 2 ;;
    --resource-group | -g) resource_group="${2:?--resource-group needs a value}"; shift 2 ;;
    --deployment | -n) deployment="${2:?--deployment needs a value}"; shift 2 ;;
    --display-name) display_name="${2:?--display-name needs a value}"; shift 2 ;;
    --app-id) app_id="${2:?--app-id needs a value}"; shift 2 ;;
    --audience) audience="${2:?--audience needs a value}"; shift 2 ;;
    --issuer-host) issuer_host="${2:?--issuer-host needs a value}"; shift 2 ;;
    --help | -h) usage 0 ;;
    *) log "unknown argument: $1"; usage 2 ;;
  esac
done

require_az

if [ -z "$principal_id" ] && [ -n "$resource_group" ]; then
  log "reading managedIdentityPrincipalId from deployment '$deployment' in resource group '$resource_group'"
  principal_id="$(deployment_output "$resource_group" "$deployment" managedIdentityPrincipalId)"
fi

tenant_a="$(signed_in_tenant)"
log "signed in to tenant $tenant_a: this must be Tenant A, the managed identity's tenant"
if [ -n "$principal_id" ]; then
  az ad sp show --id "$principal_id" --query id -o tsv >/dev/null 2>&1 ||
    die "the managed identity $principal_id is not in this tenant: sign in to Tenant A"
fi

# 1. The app registration: multi-tenant, so Tenant B can hold a service principal of it.
app_id="$(ensure_app_registration "$app_id" "$display_name" AzureADMultipleOrgs)"

audience_now="$(az ad app show --id "$app_id" --query signInAudience -o tsv)"
if [ "$audience_now" != "AzureADMultipleOrgs" ]; then
  log "app $app_id is $audience_now: making it multi-tenant (AzureADMultipleOrgs) so Tenant B can use it"
  az ad app update --id "$app_id" --sign-in-audience AzureADMultipleOrgs
fi

# The permissions Tenant B's admin consents to (setup-tenant-b.sh grants them there). Listing them here is what the
# consent screen and the Tenant B enterprise application show.
require_graph_permissions "$app_id" GroupMember.Read.All User.ReadWrite.All Group.Read.All

# 2. The federated identity credential.
issuer="https://$issuer_host/$tenant_a/v2.0"
if [ -z "$principal_id" ]; then
  log "no managed identity given (--resource-group or --principal-id): app only. Deploy with tenantBClientId=$app_id,"
  log "then run again with --resource-group <rg> to add the federated credential."
  printf '%s\n' "$app_id"
  exit 0
fi
existing="$(az ad app federated-credential list --id "$app_id" \
  --query "[?issuer=='$issuer' && subject=='$principal_id'].name | [0]" -o tsv)"
if [ -n "$existing" ]; then
  log "federated credential '$existing' already trusts the managed identity (issuer $issuer, subject $principal_id)"
else
  log "adding federated credential '$credential_name': issuer $issuer, subject $principal_id, audience $audience"
  parameters="{\"name\":\"$credential_name\",\"issuer\":\"$issuer\",\"subject\":\"$principal_id\",\"audiences\":[\"$audience\"],\"description\":\"certsync Function App managed identity\"}"
  if az ad app federated-credential show --id "$app_id" --federated-credential-id "$credential_name" >/dev/null 2>&1; then
    # Same name, other identity (e.g. the identity was re-created): point it at the current one.
    az ad app federated-credential update --id "$app_id" --federated-credential-id "$credential_name" \
      --parameters "$parameters" --output none
  else
    retry az ad app federated-credential create --id "$app_id" --parameters "$parameters" --output none
  fi
fi

log "done. Next, signed in to Tenant B: infra/scripts/setup-tenant-b.sh --app-id $app_id"
log "TENANT_B_CLIENT_ID (the tenantBClientId parameter) is $app_id"
printf '%s\n' "$app_id"
