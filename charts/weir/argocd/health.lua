-- Argo CD health for apps/Deployment under weir (docs/design.md, "Argo CD"). A release pauses the
-- Deployment, which Argo CD alone would call Suspended: weir's phase says what is going on instead.
-- Argo CD runs custom checks without Lua's string library, so this uses none. Outside a release it
-- is Argo CD's own Deployment check, so Deployments weir does not guard read as before.
local hs = {}
local annotations = obj.metadata.annotations or {}
local phase = annotations["weir.dev/phase"]
local reason = annotations["weir.dev/reason"]
local isCanaryHalf = obj.metadata.labels ~= nil and obj.metadata.labels["weir.dev/canary-of"] ~= nil

if not isCanaryHalf and (phase == "Progressing" or phase == "Promoting") then
  hs.status = "Progressing"
  hs.message = "weir: " .. (reason or ("release " .. phase))
  return hs
end
if not isCanaryHalf and phase == "RolledBack" then
  hs.status = "Degraded"
  hs.message = "weir: " .. (reason or "the release was rolled back")
  return hs
end

-- Argo CD's Deployment check, as it is for any Deployment.
local spec = obj.spec or {}
local status = obj.status or {}
if spec.paused == true then
  hs.status = "Suspended"
  hs.message = "Deployment is paused"
  return hs
end
if (obj.metadata.generation or 0) > (status.observedGeneration or 0) then
  hs.status = "Progressing"
  hs.message = "Waiting for rollout to finish: observed deployment generation less than desired generation"
  return hs
end
for _, condition in ipairs(status.conditions or {}) do
  if condition.type == "Progressing" and condition.reason == "ProgressDeadlineExceeded" then
    hs.status = "Degraded"
    hs.message = "Deployment " .. obj.metadata.name .. " exceeded its progress deadline"
    return hs
  end
end
local replicas = spec.replicas or 1
local updated = status.updatedReplicas or 0
local available = status.availableReplicas or 0
if updated < replicas then
  hs.status = "Progressing"
  hs.message = "Waiting for rollout to finish: " .. updated .. " out of " .. replicas .. " new replicas have been updated..."
  return hs
end
if (status.replicas or 0) > updated then
  hs.status = "Progressing"
  hs.message = "Waiting for rollout to finish: " .. ((status.replicas or 0) - updated) .. " old replicas are pending termination..."
  return hs
end
if available < updated then
  hs.status = "Progressing"
  hs.message = "Waiting for rollout to finish: " .. available .. " of " .. updated .. " updated replicas are available..."
  return hs
end
hs.status = "Healthy"
hs.message = ""
return hs
