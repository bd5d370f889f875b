// The Key Vault that holds the Tenant B app registration's client secret. main.bicep deploys this module only when
// tenantBCredential is `client-secret`; with `federated-managed-identity` there is no secret and no vault.
//
// The app never sees the vault's name in code: its TENANT_B_CLIENT_SECRET app setting is a Key Vault reference
// (@Microsoft.KeyVault(SecretUri=…)) that the platform resolves with the site's keyVaultReferenceIdentity.

@description('Azure region of the vault.')
param location string

@description('Tags added to the vault.')
param tags object

@description('Globally unique vault name (3–24 characters).')
@minLength(3)
@maxLength(24)
param keyVaultName string

@description('Name of the secret in the vault.')
param secretName string

@description('The Tenant B app registration\'s client secret.')
@secure()
param secretValue string

@description('When the client secret expires in Entra ID (ISO 8601); recorded as the Key Vault secret\'s expiry so it shows up in the vault before sign-ins start failing.')
param secretExpiresOn string

@description('Application (client) id of the Tenant B app registration, for the secret\'s content type.')
param tenantBClientId string

@description('Object (principal) id of the Function App\'s managed identity: gets Key Vault Secrets User on this one secret.')
param readerPrincipalId string

// Key Vault Secrets User (built-in role): read secret contents.
var keyVaultSecretsUserRoleId = '4633458b-17de-408a-b874-0445c86b69e6'

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  // checkov:skip=CKV_AZURE_109: the platform resolves the @Microsoft.KeyVault reference over the app's own network path; without VNet integration (not part of this template) that is the public endpoint, which a deny-by-default firewall would block. Every read needs an Entra token holding Key Vault Secrets User on the one secret.
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
    // Azure roles only, no access policies: the managed identity gets Key Vault Secrets User on the secret below.
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

resource secret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = {
  parent: vault
  name: secretName
  properties: {
    value: secretValue
    contentType: 'Microsoft Entra client secret of the Tenant B app ${tenantBClientId}'
    attributes: {
      enabled: true
      exp: dateTimeToEpoch(secretExpiresOn)
    }
  }
}

// Scoped to the secret, not the vault: the identity can read this secret and nothing else.
resource secretsUser 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(secret.id, readerPrincipalId, keyVaultSecretsUserRoleId)
  scope: secret
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', keyVaultSecretsUserRoleId)
    principalId: readerPrincipalId
    principalType: 'ServicePrincipal'
    description: 'certsync: read the Tenant B client secret (Key Vault reference)'
  }
}

output vaultName string = vault.name
@description('Unversioned URI: the Key Vault reference follows new versions of the secret.')
output secretUri string = secret.properties.secretUri
