// A diffusers scheduler config object from JS (snake_case keys) → sched::SchedulerConfig; every key checked.
#pragma once
#include <napi.h>

#include "model/scheduler.h"

namespace dbcore::js {

// Undefined gives the defaults; an unknown key, a wrong type or an unsupported feature switch throws EINVAL.
sched::SchedulerConfig scheduler_config_from_js(const Napi::Value& value, const char* what);

}  // namespace dbcore::js
