-- Argo CD health check for gitsync.tooljet.io AppSync and GitSyncConfig (kstatus conditions).
-- Install as resource.customizations.health.gitsync.tooljet.io_AppSync and
-- resource.customizations.health.gitsync.tooljet.io_GitSyncConfig in argocd-cm
-- (see argocd-cm-patch.yaml). Written for Argo CD's Lua 5.1 (gopher-lua); `obj` is the resource.
local hs = {}

-- Reasons of Ready=False that mean "still working on it", not "broken".
local progressingReasons = {
  AwaitingDeployKey = true,
  Progressing = true,
  Retrying = true,
  Reconciling = true,
}

local function findCondition(conditions, conditionType)
  if conditions == nil then
    return nil
  end
  for _, condition in ipairs(conditions) do
    if condition.type == conditionType then
      return condition
    end
  end
  return nil
end

local function messageOf(condition, fallback)
  if condition ~= nil and condition.message ~= nil and condition.message ~= "" then
    return condition.message
  end
  return fallback
end

-- Suspended: the operator deliberately does nothing, whatever the (stale) conditions say.
local spec = obj.spec or {}
if obj.kind == "AppSync" and spec.suspend == true then
  hs.status = "Suspended"
  hs.message = "AppSync is suspended (spec.suspend: true)"
  return hs
end
if obj.kind == "GitSyncConfig" and spec.enabled == false then
  hs.status = "Suspended"
  hs.message = "GitSyncConfig is disabled (spec.enabled: false)"
  return hs
end

local status = obj.status
if status == nil or status.conditions == nil or #status.conditions == 0 then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to report status"
  return hs
end

local conditions = status.conditions
local ready = findCondition(conditions, "Ready")
local reconciling = findCondition(conditions, "Reconciling")
local stalled = findCondition(conditions, "Stalled")

-- Conditions describe the generation the operator last observed; an older one says nothing
-- about the current spec.
local generation = nil
if obj.metadata ~= nil then
  generation = obj.metadata.generation
end
local observed = status.observedGeneration
if observed == nil and ready ~= nil then
  observed = ready.observedGeneration
end
if generation ~= nil and (observed == nil or observed ~= generation) then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe generation " .. tostring(generation)
  if observed ~= nil then
    hs.message = hs.message .. " (observed " .. tostring(observed) .. ")"
  end
  return hs
end

if stalled ~= nil and stalled.status == "True" then
  hs.status = "Degraded"
  hs.message = messageOf(ready, messageOf(stalled, "Stalled: " .. tostring(stalled.reason)))
  return hs
end

if reconciling ~= nil and reconciling.status == "True" then
  hs.status = "Progressing"
  hs.message = messageOf(ready, messageOf(reconciling, "Reconciling"))
  return hs
end

if ready == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the Ready condition"
  return hs
end

if ready.status == "True" then
  hs.status = "Healthy"
  hs.message = messageOf(ready, "Ready")
  return hs
end

if ready.status == "False" and not progressingReasons[ready.reason or ""] then
  hs.status = "Degraded"
  hs.message = messageOf(ready, "Not ready: " .. tostring(ready.reason))
  return hs
end

-- Ready=Unknown, or Ready=False with a reason that is still progressing.
hs.status = "Progressing"
hs.message = messageOf(ready, "Not ready yet: " .. tostring(ready.reason))
return hs
