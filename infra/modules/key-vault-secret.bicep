// One secret in certsync's Key Vault (created by main.bicep), readable by the Function App's managed identity and by
// nothing else: Key Vault Secrets User is granted on the secret, not on the vault. main.bicep uses it for the Tenant B
// client secret (client-secret mode only), the webhook's notification URL (it carries the function key) and its
// clientState, and the previous clientState during a rotation.
//
// The app never sees the vault in code: its app settings are Key Vault references (@Microsoft.KeyVault(SecretUri=…)),
// resolved by the platform with the site's keyVaultReferenceIdentity. Every deployment writes the secret again, which
// adds a version (same value: nothing changes for the app); the unversioned secretUri always names the newest.

@description('Name of the existing vault (main.bicep creates it).')
@minLength(3)
@maxLength(24)
param keyVaultName string

@description('Name of the secret in the vault.')
param secretName string

@description('The secret.')
@secure()
param secretValue string

@description('What the secret is, recorded as its content type (never the value).')
param contentType string

@description('Whether the secret expires: only for a secret that expires by itself (the Tenant B client secret in Entra ID). Key Vault refuses to serve an expired secret (SecretExpired), so an invented date would switch the setting off on that day.')
param expires bool

@description('When the secret expires (ISO 8601, e.g. 2026-06-30T00:00:00Z); read only when `expires` is true, and required then.')
param expiresOn string = ''

@description('Object (principal) id of the Function App\'s managed identity: gets Key Vault Secrets User on this one secret.')
param readerPrincipalId string

// Key Vault Secrets User (built-in role): read secret contents.
var keyVaultSecretsUserRoleId = '4633458b-17de-408a-b874-0445c86b69e6'

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' existing = {
  name: keyVaultName
}

// ARM's if() evaluates only the branch it returns, so dateTimeToEpoch never sees an empty date.
var attributes = expires ? {
  enabled: true
  exp: dateTimeToEpoch(expiresOn)
} : {
  enabled: true
}

resource secret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = {
  // checkov:skip=CKV_AZURE_41: the expiry is set exactly when the secret has one of its own (`expires`: the Tenant B client secret's Entra expiry); the webhook URL and clientState have none, and Key Vault refuses to serve an expired secret, so an invented date would turn change notifications off on that day. They are rotated by the operator (docs/deployment.md).
  parent: vault
  name: secretName
  properties: {
    value: secretValue
    contentType: contentType
    attributes: attributes
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
    description: 'certsync: read ${secretName} (Key Vault reference of an app setting)'
  }
}

@description('Unversioned URI: the Key Vault reference follows new versions of the secret.')
output secretUri string = secret.properties.secretUri
