-- Argo CD health of Ballast's kinds (FineTunePool, FineTuneRun, ModelRelease): it reads the
-- kstatus summary the operator writes (Ready, Reconciling, Stalled), so it never learns phases.
-- The single source of deploy/argocd/argocd-cm.yaml (`python -m ballast.codegen`). Lua 5.1.
local function say(condition)
  if condition.message == nil or condition.message == "" then
    return condition.reason or ""
  end
  return (condition.reason or "") .. ": " .. condition.message
end

local generation = obj.metadata and obj.metadata.generation
if obj.status == nil or obj.status.conditions == nil then
  return {status = "Progressing", message = "Waiting for the Ballast operator"}
end
if generation ~= nil and obj.status.observedGeneration ~= generation then
  return {status = "Progressing", message = "Waiting for the operator to observe generation " .. generation}
end

local found = {}
for _, condition in ipairs(obj.status.conditions) do
  found[condition.type] = condition
end
local ready = found["Ready"]
if ready == nil then
  return {status = "Progressing", message = "Waiting for the Ready condition"}
end
if generation ~= nil and ready.observedGeneration ~= nil and ready.observedGeneration < generation then
  return {status = "Progressing", message = "Ready is stale: " .. say(ready)}
end
if found["Stalled"] ~= nil and found["Stalled"].status == "True" then
  return {status = "Degraded", message = say(found["Stalled"])}
end
if found["Reconciling"] ~= nil and found["Reconciling"].status == "True" then
  return {status = "Progressing", message = say(found["Reconciling"])}
end
if ready.status ~= "True" then
  return {status = "Progressing", message = say(ready)}
end
-- A run judged Review waits for a person: `ballast runs approve` (its Approved condition says when).
if obj.kind == "FineTuneRun" and obj.status.verdict == "Review" then
  local approved = found["Approved"]
  if approved == nil or approved.status ~= "True" then
    return {status = "Suspended", message = say(ready)}
  end
end
return {status = "Healthy", message = say(ready)}
