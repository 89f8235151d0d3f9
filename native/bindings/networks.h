// Access to the network objects' models from other bindings (the Trainer), with the class checked.
#pragma once
#include <napi.h>

#include "model/clip_text.h"
#include "model/unet.h"
#include "network_wrap.h"

namespace dbcore::js {

template <typename Model>
struct NetworkRef {
  Model* model = nullptr;
  NetworkHandle* handle = nullptr;
};

// Throw EINVAL naming `what` when `value` is not a UNet / TextEncoder object.
NetworkRef<UNet> unet_from_js(const Napi::Value& value, const char* what);
NetworkRef<ClipTextModel> text_encoder_from_js(const Napi::Value& value, const char* what);

}  // namespace dbcore::js
