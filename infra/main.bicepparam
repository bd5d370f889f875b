// Sample parameters for infra/main.bicep. Copy it (e.g. to infra/prod.bicepparam), fill in the values marked <…>, and
// deploy with:
//   az deployment group create -g <rg> -n certsync -f infra/main.bicep -p infra/prod.bicepparam
// Secrets never go in this file: they are read from environment variables at deployment time (readEnvironmentVariable).
using 'main.bicep'

// Hosting: FlexConsumption (default) or Premium.
param plan = 'FlexConsumption'

// Tenant B: the tenant whose users get certificateUserIds, and the application (client) id certsync signs in there
// with: printed by infra/scripts/create-federated-app.sh (federated) or setup-tenant-b.sh --client-secret.
param tenantBId = '<Tenant B directory (tenant) id>'
param tenantBClientId = '<Tenant B app registration application (client) id>'

// `federated-managed-identity`: no secret anywhere (create-federated-app.sh adds the federated credential). `client-secret`:
// export CERTSYNC_TENANT_B_CLIENT_SECRET and CERTSYNC_TENANT_B_CLIENT_SECRET_EXPIRES_ON before deploying; the secret
// goes to Key Vault only.
param tenantBCredential = 'federated-managed-identity'
param tenantBClientSecret = readEnvironmentVariable('CERTSYNC_TENANT_B_CLIENT_SECRET', '')
param tenantBClientSecretExpiresOn = readEnvironmentVariable('CERTSYNC_TENANT_B_CLIENT_SECRET_EXPIRES_ON', '')

// What to sync: Tenant A group(s) -> Tenant B group(s), and how to map users and certificates (README "Settings").
param syncPairs = '<Tenant A group object id>-><Tenant B group object id>'
param matchOn = 'upn-local-part'
param certificateUserIdTemplates = '<preset or template, e.g. subject-cn or principal-name>'

// Every 4 hours (UTC). Plan only until the first run's log has been read; then set false and redeploy.
param syncSchedule = '0 0 */4 * * *'
param dryRun = true

// Pin the webhook clientState so redeploying does not rotate it: export CERTSYNC_WEBHOOK_CLIENT_STATE once (e.g.
// `openssl rand -hex 32`) and keep it. Left empty, every deployment generates a new one.
param webhookClientState = readEnvironmentVariable('CERTSYNC_WEBHOOK_CLIENT_STATE', '')

// Who may read the run logs in `cert-auth` (your own object id: `az ad signed-in-user show --query id -o tsv`).
param logReaderPrincipalId = readEnvironmentVariable('CERTSYNC_LOG_READER_ID', '')

// Anything else from the README's settings table, e.g. { name: 'LOG_LEVEL', value: 'info,certsync=debug' }.
param additionalAppSettings = []
