// certsync — the Azure resources of the Functions custom handler (issues 8 and 16).
//
// One resource group holds: a user-assigned managed identity (the app's only identity), a Linux Function App on the
// Flex Consumption plan (default) or Elastic Premium EP1, a storage account (host storage, run logs, ledger, the
// notifications queue), Application Insights on a Log Analytics workspace, and a Key Vault (RBAC authorization) with
// the app's secrets: the webhook's notification URL (it carries the function key) and clientState, and — only when
// Tenant B is reached with a client secret — that secret.
//
// The template owns every app setting the product reads, including WEBHOOK_NOTIFICATION_URL and WEBHOOK_CLIENT_STATE:
// a redeploy writes the app settings whole, so a setting made by hand would be lost by it. The function key Graph
// sends back (`?code=`) is the host key `certsync-graph`, created here with a value you pass in; a redeploy with the
// same values changes nothing, so change notifications keep working (docs/deployment.md "What a redeploy keeps").
//
// Deploy (docs/deployment.md walks through everything):
//   az deployment group create -g <rg> -n certsync -f infra/main.bicep -p infra/main.bicepparam
//
// Graph permissions, the app certsync signs in to Tenant B with, and its federated credential are directory objects,
// not Azure resources: the scripts in infra/scripts/ make them (create-federated-app.sh, grant-tenant-a.sh,
// setup-tenant-b.sh). `scripts/check-infra` checks this folder statically (checkov, shellcheck).
//
// Role definition ids are Azure built-in roles (the same in every tenant and cloud):
// https://learn.microsoft.com/azure/role-based-access-control/built-in-roles

targetScope = 'resourceGroup'

// ---------------------------------------------------------------------------------------------------------------------
// Parameters: hosting
// ---------------------------------------------------------------------------------------------------------------------

@description('Azure region of every resource. Flex Consumption exists in a subset of regions: `az functionapp list-flexconsumption-locations`.')
param location string = resourceGroup().location

@description('Prefix of every resource name (letters and digits; it is lower-cased for the storage account); a hash of the subscription and resource group makes the names unique.')
@minLength(3)
@maxLength(10)
param namePrefix string = 'certsync'

@description('Hosting plan: Flex Consumption (FC1, identity-only storage) or Elastic Premium (EP1, needs an Azure Files content share with a key).')
@allowed([
  'FlexConsumption'
  'Premium'
])
param plan string = 'FlexConsumption'

@description('Flex Consumption: the most instances the app scales out to. 40 is the lowest value the plan accepts (flex-consumption-plan, Considerations: "The lowest maximum scale is currently 40"), and more than certsync can use: one blob lease serialises every sync, so extra instances would only wait for it.')
@minValue(40)
@maxValue(1000)
param flexMaximumInstanceCount int = 40

@description('Flex Consumption: always-ready instances of the `http` scale group (function-webhook only; the timer and the queue worker scale on their own, on demand). 1 keeps the webhook warm: Graph wants an answer within 3 s and its validation handshake within 10 s, which a cold start can miss. Billed as a baseline even when idle (docs/decisions.md). 0: scale to zero.')
@minValue(0)
@maxValue(10)
param flexAlwaysReadyHttpInstances int = 1

@description('Flex Consumption: memory of each instance, in MB.')
@allowed([
  512
  2048
  4096
])
param flexInstanceMemoryMB int = 2048

@description('Premium: the most instances the plan scales out to.')
@minValue(1)
@maxValue(20)
param premiumMaximumElasticWorkerCount int = 3

@description('Redundancy of the storage account holding the ownership ledger (losing it means certsync can no longer remove the values it wrote). ZRS where the region has zones.')
@allowed([
  'Standard_LRS'
  'Standard_ZRS'
  'Standard_GRS'
  'Standard_GZRS'
])
param storageSku string = 'Standard_ZRS'

@description('Days Log Analytics keeps the host and handler logs (Application Insights is workspace-based).')
@minValue(30)
@maxValue(730)
param logRetentionInDays int = 90

@description('Object id of a user or group that may read the run logs in the `cert-auth` container (Storage Blob Data Reader on that container only). Empty: no such assignment. Flex storage accepts no account key, so an operator needs this to run `az storage blob list --auth-mode login`.')
param logReaderPrincipalId string = ''

@description('Type of logReaderPrincipalId.')
@allowed([
  'User'
  'Group'
  'ServicePrincipal'
])
param logReaderPrincipalType string = 'User'

@description('Allow basic-auth (publishing profile) deployments to the SCM site. Off: `az functionapp deployment source config-zip` uses your Microsoft Entra sign-in instead.')
param allowScmBasicAuth bool = false

@description('Tags added to every resource.')
param tags object = {}

// ---------------------------------------------------------------------------------------------------------------------
// Parameters: the product's settings (README "Settings")
// ---------------------------------------------------------------------------------------------------------------------

@description('SYNC_SCHEDULE: the timer\'s 6-field NCRONTAB, UTC.')
param syncSchedule string = '0 0 */4 * * *'

@description('TENANT_A_ID: the source tenant. With TENANT_A_CREDENTIAL=managed-identity it must be the tenant of this subscription (a managed identity only gets tokens from its own tenant).')
param tenantAId string = subscription().tenantId

@description('TENANT_B_ID: the target tenant (where certificateUserIds are written).')
param tenantBId string

@description('TENANT_B_CREDENTIAL: `federated-managed-identity` (no secret: a multi-tenant app registered in Tenant A trusts this managed identity and is consented in Tenant B) or `client-secret` (an app registered in Tenant B; the secret is kept in Key Vault).')
@allowed([
  'federated-managed-identity'
  'client-secret'
])
param tenantBCredential string = 'federated-managed-identity'

@description('TENANT_B_CLIENT_ID: application (client) id of the app certsync signs in to Tenant B with (create-federated-app.sh, or setup-tenant-b.sh --client-secret, prints it).')
param tenantBClientId string

@description('The Tenant B app registration\'s client secret; used only when tenantBCredential is `client-secret`, stored in Key Vault and never in an app setting.')
@secure()
param tenantBClientSecret string = ''

@description('When that client secret expires (ISO 8601, e.g. 2026-06-30T00:00:00Z; setup-tenant-b.sh prints it). Required with `client-secret`: recorded as the Key Vault secret\'s expiry.')
param tenantBClientSecretExpiresOn string = ''

@description('SYNC_PAIRS: `<A group id>[,<A group id>…]-><B group id>[,…]`, pairs separated by `;`.')
param syncPairs string

@description('MATCH_ON: how a Tenant A user is matched to a Tenant B user.')
param matchOn string = 'upn-local-part'

@description('CERTIFICATE_USER_ID_TEMPLATES: the values to write (presets or templates, `;`-separated). No default on purpose: it must match how your certificates are built (README "Choosing the certificateUserIds mapping").')
@minLength(1)
param certificateUserIdTemplates string

@description('DRY_RUN: plan and log, never write. Keep `true` for the first deployment, read the first run\'s log, then redeploy with `false`.')
param dryRun bool = true

@description('The function key Graph sends back on every notification (the `?code=` of WEBHOOK_NOTIFICATION_URL): the value of the host key `certsync-graph`. Generate it once (`openssl rand -hex 32`) and pass the same value to every deployment; another value rotates the key (the next timer run re-creates the subscriptions on the new URL). 32–128 characters, letters, digits, `-` or `_` only (it goes into the URL as is).')
@secure()
@minLength(32)
@maxLength(128)
param webhookFunctionKey string

@description('WEBHOOK_CLIENT_STATE: the clientState secret every Graph subscription is created with, and which every notification must carry. Generate it once (`openssl rand -hex 32`) and pass the same value to every deployment: Graph cannot change the clientState of a live subscription, so a new value makes the notifications of the existing subscriptions be dropped (rotate with webhookPreviousClientState). 32–128 characters (Graph allows 128).')
@secure()
@minLength(32)
@maxLength(128)
param webhookClientState string

@description('WEBHOOK_PREVIOUS_CLIENT_STATE: the previous clientState, still accepted during a rotation. Empty: not set.')
@secure()
@maxLength(128)
param webhookPreviousClientState string = ''

@description('Further product settings, as a list of { name, value } (e.g. REMOVAL_THRESHOLD_USERS, TRANSITIVE_MEMBERSHIP, LOG_LEVEL, AZURE_CLOUD). Do not repeat a name this template sets.')
param additionalAppSettings array = []

// ---------------------------------------------------------------------------------------------------------------------
// Names and constants
// ---------------------------------------------------------------------------------------------------------------------

var isFlex = plan == 'FlexConsumption'
var useClientSecret = tenantBCredential == 'client-secret'

var token = toLower(uniqueString(subscription().id, resourceGroup().id, namePrefix))
var identityName = 'id-${namePrefix}-${token}'
var storageAccountName = take(toLower('st${replace(namePrefix, '-', '')}${token}'), 24)
var planName = 'plan-${namePrefix}-${token}'
var functionAppName = 'func-${namePrefix}-${token}'
var workspaceName = 'log-${namePrefix}-${token}'
var appInsightsName = 'appi-${namePrefix}-${token}'
var keyVaultName = take('kv-${namePrefix}-${token}', 24)

// The product's containers and queue (README "Settings": LOG_CONTAINER / STATE_CONTAINER; function-webhook/function.json).
var logContainerName = 'cert-auth'
var stateContainerName = 'certsync-state'
var notificationsQueueName = 'graph-notifications'
// Flex Consumption: where `az functionapp deployment source config-zip` uploads the package.
var deploymentContainerName = 'app-package'
// Key Vault secrets, each read by one app setting through a Key Vault reference.
var tenantBSecretName = 'tenant-b-client-secret'
var webhookUrlSecretName = 'webhook-notification-url'
var webhookClientStateSecretName = 'webhook-client-state'
var webhookPreviousClientStateSecretName = 'webhook-previous-client-state'
// The host key Graph's notificationUrl carries. A host key is accepted by every function with authLevel `function`
// (function-keys-how-to), and function-webhook is the app's only HTTP function; unlike a key of the function itself
// (sites/functions/keys), it exists as soon as the host does, before the package is deployed.
var webhookKeyName = 'certsync-graph'

// Built-in role definition ids.
var roles = {
  storageBlobDataOwner: 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b' // Storage Blob Data Owner
  storageBlobDataReader: '2a2b9908-6ea1-4ae2-8e65-a410df84e7d1' // Storage Blob Data Reader
  storageQueueDataContributor: '974c5e8b-45b9-4653-ba55-5f855dd0fb88' // Storage Queue Data Contributor
  monitoringMetricsPublisher: '3913510d-42f4-4e42-8a64-420c390055eb' // Monitoring Metrics Publisher
  // Key Vault Secrets User (4633458b-17de-408a-b874-0445c86b69e6) is granted per secret in modules/key-vault-secret.bicep.
}

// ---------------------------------------------------------------------------------------------------------------------
// Identity
// ---------------------------------------------------------------------------------------------------------------------

// The app's one identity: host storage, Application Insights, the Key Vault reference, Microsoft Graph in Tenant A
// (TENANT_A_CREDENTIAL=managed-identity) and the federated credential of the Tenant B app. User-assigned so it exists
// before the app (role assignments are in place when the host first starts) and survives re-creating the app.
resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: identityName
  location: location
  tags: tags
}

// ---------------------------------------------------------------------------------------------------------------------
// Monitoring
// ---------------------------------------------------------------------------------------------------------------------

resource workspace 'Microsoft.OperationalInsights/workspaces@2023-09-01' = {
  name: workspaceName
  location: location
  tags: tags
  properties: {
    sku: {
      name: 'PerGB2018'
    }
    retentionInDays: logRetentionInDays
  }
}

resource appInsights 'Microsoft.Insights/components@2020-02-02' = {
  name: appInsightsName
  location: location
  tags: tags
  kind: 'web'
  properties: {
    Application_Type: 'web'
    WorkspaceResourceId: workspace.id
    IngestionMode: 'LogAnalytics'
    // Ingestion only with a Microsoft Entra token: the host authenticates as the managed identity
    // (APPLICATIONINSIGHTS_AUTHENTICATION_STRING) with the Monitoring Metrics Publisher role below.
    DisableLocalAuth: true
  }
}

// ---------------------------------------------------------------------------------------------------------------------
// Storage
// ---------------------------------------------------------------------------------------------------------------------

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  // checkov:skip=CKV_AZURE_43: the name is computed ('st' + namePrefix + uniqueString), which checkov cannot evaluate; it is lower-case letters and digits, at most 24, by construction.
  // checkov:skip=CKV_AZURE_206: geo-replication (GRS/GZRS) is a parameter choice; the default ZRS survives a zone loss, and the account holds only kilobytes of state that a regional outage pauses rather than loses (runs resume when the region returns).
  // checkov:skip=CKV_AZURE_35: no virtual network in this template (the app runs without VNet integration and has no fixed outbound addresses); access is authorized by Entra ID roles, and on Flex by nothing else (shared keys are disabled). Add VNet integration and private endpoints to close the public endpoint.
  // checkov:skip=CKV_AZURE_59: same reason as CKV_AZURE_35: the Functions host reaches its storage over the public endpoint when the app has no VNet integration; anonymous access is off (allowBlobPublicAccess: false).
  name: storageAccountName
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: storageSku
  }
  properties: {
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    allowBlobPublicAccess: false
    allowCrossTenantReplication: false
    // Flex Consumption: every client (host, deployment, certsync) uses the managed identity, so account keys are
    // refused. Premium: the app's content share on Azure Files (WEBSITE_CONTENTAZUREFILECONNECTIONSTRING) is only
    // reachable with a connection string holding the account key, so shared keys must stay allowed there.
    allowSharedKeyAccess: !isFlex
    defaultToOAuthAuthentication: true
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      bypass: 'AzureServices'
      defaultAction: 'Allow'
    }
  }
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: storage
  name: 'default'
  properties: {
    // A deleted ledger blob (certsync-state) or run log can be restored for 14 days, and an overwritten one from its
    // earlier versions: a lost ledger stops the sync until it is restored (docs/operations.md).
    isVersioningEnabled: true
    deleteRetentionPolicy: {
      enabled: true
      days: 14
    }
    containerDeleteRetentionPolicy: {
      enabled: true
      days: 14
    }
  }
}

// Run logs: cert-auth/yyyy/MM/dd/log_yyyyMMddHHmmss_<run>.log and the JSON reports.
resource logContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: logContainerName
  properties: {
    publicAccess: 'None'
  }
}

// Ownership ledger and the per-tenant lease.
resource stateContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: stateContainerName
  properties: {
    publicAccess: 'None'
  }
}

// Flex Consumption's deployment package (functionAppConfig.deployment); stays empty on Premium.
resource deploymentContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: deploymentContainerName
  properties: {
    publicAccess: 'None'
  }
}

resource queueService 'Microsoft.Storage/storageAccounts/queueServices@2023-05-01' = {
  parent: storage
  name: 'default'
}

// function-webhook's queue output. Its `-poison` twin is created by the host when a message first fails five times.
resource notificationsQueue 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' = {
  parent: queueService
  name: notificationsQueueName
}

// ---------------------------------------------------------------------------------------------------------------------
// Key Vault: the app's secrets
// ---------------------------------------------------------------------------------------------------------------------

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  // checkov:skip=CKV_AZURE_109: the platform resolves the @Microsoft.KeyVault references over the app's own network path; without VNet integration (not part of this template) that is the public endpoint, which a deny-by-default firewall would block. Every read needs an Entra token holding Key Vault Secrets User on the one secret.
  // checkov:skip=CKV_AZURE_189: same reason as CKV_AZURE_109: turning public network access off needs VNet integration and a private endpoint, which this template does not create.
  name: keyVaultName
  location: location
  tags: tags
  properties: {
    tenantId: subscription().tenantId
    sku: {
      family: 'A'
      name: 'standard'
    }
    // Azure roles only, no access policies: the managed identity gets Key Vault Secrets User on each secret it reads.
    enableRbacAuthorization: true
    enableSoftDelete: true
    softDeleteRetentionInDays: 90
    // Cannot be turned off again; a deleted vault's name stays reserved for the retention period (docs/deployment.md).
    enablePurgeProtection: true
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      bypass: 'AzureServices'
      defaultAction: 'Allow'
    }
  }
}

// Secrets are modules (modules/key-vault-secret.bicep), so that a conditional one is still fully checked by
// `scripts/check-infra` (checkov does not look inside `resource … = if (…)`). Each grants the identity Key Vault
// Secrets User on its secret only.

// Tenant B client secret: only in client-secret mode.
module tenantBSecret 'modules/key-vault-secret.bicep' = if (useClientSecret) {
  name: 'certsync-secret-tenant-b'
  params: {
    keyVaultName: vault.name
    secretName: tenantBSecretName
    secretValue: tenantBClientSecret
    contentType: 'Microsoft Entra client secret of the Tenant B app ${tenantBClientId}'
    expires: true
    expiresOn: tenantBClientSecretExpiresOn
    readerPrincipalId: identity.properties.principalId
  }
}

// WEBHOOK_CLIENT_STATE. Written before the app, so the app's first start can resolve it.
module webhookClientStateSecret 'modules/key-vault-secret.bicep' = {
  name: 'certsync-secret-webhook-client-state'
  params: {
    keyVaultName: vault.name
    secretName: webhookClientStateSecretName
    secretValue: webhookClientState
    contentType: 'clientState of the Graph change-notification subscriptions (WEBHOOK_CLIENT_STATE)'
    expires: false
    readerPrincipalId: identity.properties.principalId
  }
}

// WEBHOOK_PREVIOUS_CLIENT_STATE, during a rotation only.
module webhookPreviousClientStateSecret 'modules/key-vault-secret.bicep' = if (!empty(webhookPreviousClientState)) {
  name: 'certsync-secret-webhook-previous-client-state'
  params: {
    keyVaultName: vault.name
    secretName: webhookPreviousClientStateSecretName
    secretValue: webhookPreviousClientState
    contentType: 'previous clientState, accepted during a rotation (WEBHOOK_PREVIOUS_CLIENT_STATE)'
    expires: false
    readerPrincipalId: identity.properties.principalId
  }
}

// ---------------------------------------------------------------------------------------------------------------------
// Role assignments of the managed identity — each one needed, each at the narrowest scope that works
// ---------------------------------------------------------------------------------------------------------------------

// Storage Blob Data Owner on the account: Microsoft documents this role for identity-based AzureWebJobsStorage
// ("Connecting to host storage with an identity"). The host creates and writes its own containers
// (azure-webjobs-hosts: timer schedule status, singleton and host-id leases; azure-webjobs-secrets: function keys),
// so the scope is the account, not a container. The same assignment covers certsync's own blobs (cert-auth,
// certsync-state) and, on Flex, the deployment package container the platform reads with this identity.
resource blobOwner 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, identity.id, roles.storageBlobDataOwner)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageBlobDataOwner)
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
    description: 'certsync: Functions host storage (AzureWebJobsStorage), run logs, ledger and deployment package'
  }
}

// Storage Queue Data Contributor on the account: function-webhook's queue output writes graph-notifications, and the
// host creates graph-notifications-poison on demand (a queue that does not exist yet cannot be a role scope).
// Message Sender alone would not let the binding create or inspect the queue.
resource queueContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, identity.id, roles.storageQueueDataContributor)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageQueueDataContributor)
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
    description: 'certsync: graph-notifications queue output and its poison queue'
  }
}

// Monitoring Metrics Publisher on the Application Insights component only: Entra-authenticated telemetry ingestion
// (local authentication is disabled on the component).
resource metricsPublisher 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(appInsights.id, identity.id, roles.monitoringMetricsPublisher)
  scope: appInsights
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.monitoringMetricsPublisher)
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
    description: 'certsync: Application Insights ingestion with Microsoft Entra authentication'
  }
}

// Optional, for a person: Storage Blob Data Reader on the run-log container only.
resource logReader 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(logReaderPrincipalId)) {
  name: guid(storage.id, logContainerName, logReaderPrincipalId, roles.storageBlobDataReader)
  scope: logContainer
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageBlobDataReader)
    principalId: logReaderPrincipalId
    principalType: logReaderPrincipalType
    description: 'certsync: read the run logs (cert-auth)'
  }
}

// ---------------------------------------------------------------------------------------------------------------------
// Hosting plan and Function App
// ---------------------------------------------------------------------------------------------------------------------

var planSku = isFlex ? {
  name: 'FC1'
  tier: 'FlexConsumption'
} : {
  name: 'EP1'
  tier: 'ElasticPremium'
  family: 'EP'
}

// reserved: Linux.
var planProperties = isFlex ? {
  reserved: true
} : {
  reserved: true
  maximumElasticWorkerCount: premiumMaximumElasticWorkerCount
}

resource hostingPlan 'Microsoft.Web/serverfarms@2024-04-01' = {
  // checkov:skip=CKV_AZURE_225: zone redundancy needs at least 2 always-ready/minimum instances (Premium: 3), tripling the cost of a job that runs every few hours; an interrupted run is completed by the next one.
  name: planName
  location: location
  tags: tags
  kind: isFlex ? 'functionapp' : 'elastic'
  sku: planSku
  properties: planProperties
}

var blobEndpoint = storage.properties.primaryEndpoints.blob
var queueEndpoint = storage.properties.primaryEndpoints.queue

// App settings are literal name/value lists (not an object turned into a list with a for-expression: Bicep only
// allows for-expressions in variables over values known before the deployment starts, and these are not).

// Host storage, identity-based (functions-reference "Connecting to host storage with an identity"). certsync itself
// reads AzureWebJobsStorage__blobServiceUri and __clientId for its own containers (STORAGE_CONNECTION defaults to
// AzureWebJobsStorage), and function-webhook's queue output uses the same connection.
var hostStorageSettings = [
  {
    name: 'AzureWebJobsStorage__blobServiceUri'
    value: blobEndpoint
  }
  {
    name: 'AzureWebJobsStorage__queueServiceUri'
    value: queueEndpoint
  }
  {
    name: 'AzureWebJobsStorage__credential'
    value: 'managedidentity'
  }
  {
    name: 'AzureWebJobsStorage__clientId'
    value: identity.properties.clientId
  }
]

var monitoringSettings = [
  {
    name: 'APPLICATIONINSIGHTS_CONNECTION_STRING'
    value: appInsights.properties.ConnectionString
  }
  {
    // Telemetry is sent with a Microsoft Entra token of the managed identity (local auth is off on the component).
    name: 'APPLICATIONINSIGHTS_AUTHENTICATION_STRING'
    value: 'ClientId=${identity.properties.clientId};Authorization=AAD'
  }
]

// Premium only. Flex Consumption rejects these settings: its runtime is functionAppConfig.runtime, and it has no
// content share.
var premiumSettings = isFlex ? [] : [
  {
    name: 'FUNCTIONS_WORKER_RUNTIME'
    value: 'custom'
  }
  {
    name: 'FUNCTIONS_EXTENSION_VERSION'
    value: '~4'
  }
  {
    // Elastic Premium keeps the app's files on an Azure Files share, reachable here only with a connection string
    // holding the account key (hence allowSharedKeyAccess stays true on Premium).
    name: 'WEBSITE_CONTENTAZUREFILECONNECTIONSTRING'
    value: 'DefaultEndpointsProtocol=https;AccountName=${storage.name};EndpointSuffix=${environment().suffixes.storage};AccountKey=${storage.listKeys().keys[0].value}'
  }
  {
    name: 'WEBSITE_CONTENTSHARE'
    value: take(toLower(functionAppName), 63)
  }
  {
    // Mount the deployed zip as it is (read-only) instead of extracting it: `handler` keeps its executable bit.
    name: 'WEBSITE_RUN_FROM_PACKAGE'
    value: '1'
  }
]

// The product's settings (README "Settings").
var productSettings = [
  {
    name: 'SYNC_SCHEDULE'
    value: syncSchedule
  }
  {
    name: 'TENANT_A_ID'
    value: tenantAId
  }
  {
    name: 'TENANT_A_CREDENTIAL'
    value: 'managed-identity'
  }
  {
    name: 'MANAGED_IDENTITY_CLIENT_ID'
    value: identity.properties.clientId
  }
  {
    name: 'TENANT_B_ID'
    value: tenantBId
  }
  {
    name: 'TENANT_B_CREDENTIAL'
    value: tenantBCredential
  }
  {
    name: 'TENANT_B_CLIENT_ID'
    value: tenantBClientId
  }
  {
    name: 'SYNC_PAIRS'
    value: syncPairs
  }
  {
    name: 'MATCH_ON'
    value: matchOn
  }
  {
    name: 'CERTIFICATE_USER_ID_TEMPLATES'
    value: certificateUserIdTemplates
  }
  {
    name: 'DRY_RUN'
    value: dryRun ? 'true' : 'false'
  }
  {
    name: 'LOG_CONTAINER'
    value: logContainerName
  }
  {
    name: 'STATE_CONTAINER'
    value: stateContainerName
  }
]

// Secrets: Key Vault references, resolved by the platform with keyVaultReferenceIdentity (the user-assigned identity).
// The unversioned secret URI follows new versions of the secret. The URIs are spelled out (not module outputs) because
// the notification URL's secret can only be written after the app exists (it holds the app's host name).
var vaultSecretsUri = 'https://${keyVaultName}${environment().suffixes.keyvaultDns}/secrets/'

// The webhook: both settings are always set, so every timer run keeps the Graph subscriptions alive.
var webhookSettings = [
  {
    name: 'WEBHOOK_NOTIFICATION_URL'
    value: '@Microsoft.KeyVault(SecretUri=${vaultSecretsUri}${webhookUrlSecretName})'
  }
  {
    name: 'WEBHOOK_CLIENT_STATE'
    value: '@Microsoft.KeyVault(SecretUri=${vaultSecretsUri}${webhookClientStateSecretName})'
  }
]

var previousClientStateSettings = empty(webhookPreviousClientState) ? [] : [
  {
    name: 'WEBHOOK_PREVIOUS_CLIENT_STATE'
    value: '@Microsoft.KeyVault(SecretUri=${vaultSecretsUri}${webhookPreviousClientStateSecretName})'
  }
]

var secretSettings = useClientSecret ? [
  {
    name: 'TENANT_B_CLIENT_SECRET'
    value: '@Microsoft.KeyVault(SecretUri=${vaultSecretsUri}${tenantBSecretName})'
  }
] : []

var appSettingsList = concat(premiumSettings, hostStorageSettings, monitoringSettings, productSettings, webhookSettings, previousClientStateSettings, secretSettings, additionalAppSettings)

// Per-function scaling: function-webhook is the `http` group; function-cert-sync and function-notifications each
// scale alone (`function:<name>`) and start on demand, where a cold start costs nothing that matters.
var flexAlwaysReady = flexAlwaysReadyHttpInstances > 0 ? [
  {
    name: 'http'
    instanceCount: flexAlwaysReadyHttpInstances
  }
] : []

var flexAppConfig = {
  deployment: {
    storage: {
      type: 'blobContainer'
      value: '${blobEndpoint}${deploymentContainerName}'
      authentication: {
        type: 'UserAssignedIdentity'
        userAssignedIdentityResourceId: identity.id
      }
    }
  }
  scaleAndConcurrency: {
    maximumInstanceCount: flexMaximumInstanceCount
    instanceMemoryMB: flexInstanceMemoryMB
    alwaysReady: flexAlwaysReady
  }
  runtime: {
    name: 'custom'
    version: '1.0'
  }
}

resource functionApp 'Microsoft.Web/sites@2024-04-01' = {
  // checkov:skip=CKV_AZURE_17: incoming client certificates would make Microsoft Graph unable to deliver change notifications (Graph presents none); the webhook is protected by the function key and the clientState secret.
  // checkov:skip=CKV_AZURE_16: App Service Authentication (Easy Auth) would reject Graph's unauthenticated notification POSTs; the function key and clientState protect the one HTTP endpoint.
  // checkov:skip=CKV_AZURE_222: Graph change notifications arrive from the public internet (no fixed Graph address ranges for webhooks), so the site must be publicly reachable.
  // checkov:skip=CKV_AZURE_212: one warm instance is kept (Flex: one always-ready instance for function-webhook; Premium: one minimum instance), not two: a batch sync every few hours needs no failover instance, the timer is a singleton and a missed run happens once late (useMonitor), and Graph retries a notification for 4 hours.
  // checkov:skip=CKV_AZURE_213: health check pings a path every minute on every instance, which on Flex Consumption keeps instances alive (cost) and certsync exposes no HTTP health route to the front end (only the host's `GET /` over loopback).
  name: functionAppName
  location: location
  tags: tags
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identity.id}': {}
    }
  }
  properties: {
    serverFarmId: hostingPlan.id
    reserved: true
    httpsOnly: true
    clientAffinityEnabled: false
    // Graph must reach function-webhook, so the site stays public; the host checks the function key (authLevel
    // function) and certsync the clientState before anything is accepted.
    publicNetworkAccess: 'Enabled'
    // The identity that resolves @Microsoft.KeyVault references (a user-assigned identity must be named).
    keyVaultReferenceIdentity: identity.id
    siteConfig: {
      minTlsVersion: '1.2'
      scmMinTlsVersion: '1.2'
      ftpsState: 'Disabled'
      http20Enabled: true
      remoteDebuggingEnabled: false
      // Premium: custom handlers on Linux run on the plain Functions image, so linuxFxVersion is empty and the stack
      // is FUNCTIONS_WORKER_RUNTIME=custom. Flex Consumption takes neither (functionAppConfig.runtime instead).
      linuxFxVersion: isFlex ? null : ''
      minimumElasticInstanceCount: isFlex ? null : 1
      appSettings: appSettingsList
    }
    functionAppConfig: isFlex ? flexAppConfig : null
  }
  dependsOn: [
    // The host starts with identity-based storage and telemetry: the roles must exist first.
    blobOwner
    queueContributor
    metricsPublisher
    tenantBSecret
    webhookClientStateSecret
    webhookPreviousClientStateSecret
    logContainer
    stateContainer
    deploymentContainer
    notificationsQueue
  ]
}

// Publishing with a publishing-profile password is off: deployments authenticate with Microsoft Entra ID.
resource scmBasicAuth 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: functionApp
  name: 'scm'
  properties: {
    allow: allowScmBasicAuth
  }
}

// Premium only: Flex Consumption has no FTP endpoint at all.
resource ftpBasicAuth 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = if (!isFlex) {
  parent: functionApp
  name: 'ftp'
  properties: {
    allow: false
  }
}

// ---------------------------------------------------------------------------------------------------------------------
// The webhook's function key and notification URL
// ---------------------------------------------------------------------------------------------------------------------

// The host key Graph's notificationUrl carries. Its value is the webhookFunctionKey parameter, so a redeploy with the
// same value leaves the key as it is. Learn documents only that a key written without `value` is generated when the
// resource is created (functions-infrastructure-as-code, host keys); what a later write without one does is not said,
// so the template always gives the value. Bicep has no type information for this resource type (warning BCP081,
// expected); the name form `<site>/default/<key>` is the one Learn's sample uses. The key lives in the host's secrets
// (azure-webjobs-secrets), not in an app setting, so nothing else removes it.
resource webhookHostKey 'Microsoft.Web/sites/host/functionKeys@2022-09-01' = {
  name: '${functionApp.name}/default/${webhookKeyName}'
  properties: {
    name: webhookKeyName
    value: webhookFunctionKey
  }
}

// WEBHOOK_NOTIFICATION_URL: function-webhook's URL with the host key. It holds the app's host name, so it is written
// after the app (which therefore cannot wait for it): on the very first deployment the app starts before this secret
// exists, and docs/deployment.md has the platform resolve the references again right after, before the package is
// deployed. On every later deployment the secret already exists and is rewritten with the same value.
module webhookUrlSecret 'modules/key-vault-secret.bicep' = {
  name: 'certsync-secret-webhook-url'
  params: {
    keyVaultName: vault.name
    secretName: webhookUrlSecretName
    secretValue: 'https://${functionApp.properties.defaultHostName}/api/function-webhook?code=${webhookFunctionKey}'
    contentType: 'Graph notificationUrl: function-webhook with the host key ${webhookKeyName} (WEBHOOK_NOTIFICATION_URL)'
    expires: false
    readerPrincipalId: identity.properties.principalId
  }
  dependsOn: [
    // The URL is published only once the key it carries exists.
    webhookHostKey
  ]
}

// ---------------------------------------------------------------------------------------------------------------------
// Outputs (docs/deployment.md uses them)
// ---------------------------------------------------------------------------------------------------------------------

output functionAppName string = functionApp.name
output defaultHostName string = functionApp.properties.defaultHostName
@description('Graph notificationUrl without its key. The full URL (with `?code=`) is the Key Vault secret webhook-notification-url, which WEBHOOK_NOTIFICATION_URL references.')
output webhookUrlBase string = 'https://${functionApp.properties.defaultHostName}/api/function-webhook'
@description('Name of the host key in the notification URL: `az functionapp keys list -g <rg> -n <app> --query functionKeys`.')
output webhookKeyName string = webhookKeyName
output managedIdentityName string = identity.name
@description('Object id of the managed identity\'s service principal: grant-tenant-a.sh grants Graph permissions to it, and it is the subject of the federated credential create-federated-app.sh adds.')
output managedIdentityPrincipalId string = identity.properties.principalId
output managedIdentityClientId string = identity.properties.clientId
output tenantAId string = tenantAId
output storageAccountName string = storage.name
output logContainerName string = logContainerName
output stateContainerName string = stateContainerName
output keyVaultName string = vault.name
output applicationInsightsName string = appInsights.name
output plan string = plan
