#!/usr/bin/env bash
# Grants certsync's managed identity the Microsoft Graph application permissions it needs in Tenant A.
#
#   infra/scripts/grant-tenant-a.sh --resource-group <rg> [--deployment certsync] [--device-management | --cloud-pki]
#   infra/scripts/grant-tenant-a.sh --principal-id <managed identity principal (object) id> [--device-management | --cloud-pki]
#
# Run signed in to Tenant A (az login --tenant <Tenant A id>), the tenant of the subscription holding the Function App,
# as a Privileged Role Administrator or Global Administrator. Idempotent: permissions already granted are left alone.
#
# Permissions (README "Permissions"), application permissions of Microsoft Graph:
#   GroupMember.Read.All  read the members of the source groups
#   User.Read.All         read the members' UPN, mail, employeeId… to match them and render certificateUserIds
#   Group.Read.All        create Graph change-notification subscriptions on the source groups
#   DeviceManagementConfiguration.Read.All  with --device-management or --cloud-pki: read the certificates Intune
#                         issued (CERTIFICATE_SOURCE=intune-connector or cloud-pki, high-affinity bindings)
#   DeviceManagementCloudCA.ReadWrite.All   with --cloud-pki: list the Cloud PKI CAs (the List API documents only
#                         ReadWrite.All; certsync never writes a CA)
#
# A managed identity has no app registration, so the portal cannot grant it API permissions; an app role assignment
# (POST /servicePrincipals/{Microsoft Graph}/appRoleAssignedTo) does, and is the admin consent at the same time.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"

usage() {
  sed -n '4,5p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit "$1"
}

principal_id=""
resource_group=""
deployment="certsync"
device_management=false
cloud_pki=false

while [ $# -gt 0 ]; do
  case "$1" in
    --principal-id) principal_id="${2:?--principal-id needs a value}"; shift 2 ;;
    --resource-group | -g) resource_group="${2:?--resource-group needs a value}"; shift 2 ;;
    --deployment | -n) deployment="${2:?--deployment needs a value}"; shift 2 ;;
    --device-management) device_management=true; shift ;;
    --cloud-pki) device_management=true; cloud_pki=true; shift ;;
    --help | -h) usage 0 ;;
    *) log "unknown argument: $1"; usage 2 ;;
  esac
done

require_az

if [ -z "$principal_id" ]; then
  [ -n "$resource_group" ] || die "give --principal-id, or --resource-group (and --deployment) to read it from the deployment"
  log "reading managedIdentityPrincipalId from deployment '$deployment' in resource group '$resource_group'"
  principal_id="$(deployment_output "$resource_group" "$deployment" managedIdentityPrincipalId)"
fi

log "signed in to tenant $(signed_in_tenant): this must be Tenant A, the managed identity's tenant"

# The managed identity's service principal: its object id is the identity's principal id.
mi_name="$(az ad sp show --id "$principal_id" --query displayName -o tsv 2>/dev/null)" ||
  die "no service principal with object id $principal_id in this tenant (wrong tenant, or a new identity: retry in a minute)"
log "managed identity: $mi_name (service principal $principal_id)"

permissions=(GroupMember.Read.All User.Read.All Group.Read.All)
if [ "$device_management" = true ]; then
  permissions+=(DeviceManagementConfiguration.Read.All)
fi
if [ "$cloud_pki" = true ]; then
  permissions+=(DeviceManagementCloudCA.ReadWrite.All)
fi
grant_graph_permissions "$principal_id" "${permissions[@]}"

log "done. A token the identity got before this grant keeps its old permissions until it expires (managed identity"
log "tokens are cached for up to 24 hours), so grant before the first run."
