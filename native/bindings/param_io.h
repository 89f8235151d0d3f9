// Reading and writing named parameters and gradients of a ParamStore from JS (a table walk).
#pragma once
#include <napi.h>

#include "model/params.h"

namespace dbcore::js {

// [{name, shape}] in table order.
Napi::Array param_table_to_js(Napi::Env env, const ParamTable& table);
// Copies a JS tensor (F32, F16 or BF16, converted to fp32) into the named parameter; shape must match.
void set_param_from_js(ParamStore& store, const std::string& name, const Napi::Value& tensor);
// A new F32 JS tensor holding a copy of the named parameter (or its gradient).
Napi::Object param_to_js(Napi::Env env, ParamStore& store, const std::string& name, bool grad);

}  // namespace dbcore::js
