// Sample parameters for infra/main.bicep. Copy it (e.g. to infra/prod.bicepparam), fill in the values marked <…>, and
// deploy with:
//   az deployment group create -g <rg> -n certsync -f infra/main.bicep -p infra/prod.bicepparam
// Secrets never go in this file: they are read from environment variables at deployment time (readEnvironmentVariable).
using 'main.bicep'

// Hosting: FlexConsumption (default) or Premium. Flex Consumption: one always-ready instance for function-webhook
// (Graph wants an answer within 3 s), and the plan's lowest maximum of 40 instances (docs/decisions.md "Flex
// Consumption sizing").
param plan = 'FlexConsumption'
param flexAlwaysReadyHttpInstances = 1
param flexMaximumInstanceCount = 40

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

// The webhook's two secrets, generated once and passed unchanged to every deployment (docs/deployment.md keeps them in
// a file only you can read, outside the repository): the function key in Graph's notificationUrl and the clientState.
// No default on purpose: a deployment without them stops before it changes anything, instead of rotating them.
param webhookFunctionKey = readEnvironmentVariable('CERTSYNC_WEBHOOK_FUNCTION_KEY')
param webhookClientState = readEnvironmentVariable('CERTSYNC_WEBHOOK_CLIENT_STATE')
// During a clientState rotation only: the previous value, still accepted until the subscriptions carry the new one.
param webhookPreviousClientState = readEnvironmentVariable('CERTSYNC_WEBHOOK_PREVIOUS_CLIENT_STATE', '')

// Who may read the run logs in `cert-auth` (your own object id: `az ad signed-in-user show --query id -o tsv`).
param logReaderPrincipalId = readEnvironmentVariable('CERTSYNC_LOG_READER_ID', '')

// Anything else from the README's settings table, e.g. { name: 'LOG_LEVEL', value: 'info,certsync=debug' }.
param additionalAppSettings = []
