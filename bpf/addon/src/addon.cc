// Entry point of sluice_bpf.node: registers the wrapped classes and free functions. Only bpf/addon/index.ts loads it.
#include "handles.h"

namespace sluice {

namespace {
Napi::Value SetErrorClasses(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = ArgObject(env, info[0], "set error classes");
  AddonData* data = Data(env);
  auto take = [&](const char* key, Napi::FunctionReference& ref) {
    Napi::Value v = o.Get(key);
    if (!v.IsFunction()) ThrowInvalid(env, std::string("set error classes: ") + key + " must be a class");
    ref = Napi::Persistent(v.As<Napi::Function>());
  };
  take("SyscallError", data->syscallError);
  take("VerifierError", data->verifierError);
  take("InvalidArgumentError", data->invalidArgumentError);
  take("InvalidStateError", data->invalidStateError);
  take("ClosedError", data->closedError);
  take("NotSupportedError", data->notSupportedError);
  return env.Undefined();
}

Napi::Value LibbpfLog(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  uint32_t n = info[0].IsUndefined() ? 100 : ArgU32(env, info[0], "libbpf log: lines");
  return ToJsArray(env, LogTail(n));
}

Napi::Value NumPossibleCpus(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), PossibleCpus()); }

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  InstallLibbpfPrint();
  auto* data = new AddonData();
  env.SetInstanceData<AddonData>(data);
  Napi::Function map = Map::Define(env);
  Napi::Function program = Program::Define(env);
  Napi::Function link = Link::Define(env);
  Napi::Function object = BpfObject::Define(env);
  Napi::Function stats = Stats::Define(env);
  data->mapCtor = Napi::Persistent(map);
  data->programCtor = Napi::Persistent(program);
  data->linkCtor = Napi::Persistent(link);
  data->objectCtor = Napi::Persistent(object);
  data->statsCtor = Napi::Persistent(stats);
  exports.Set("Map", map);
  exports.Set("Program", program);
  exports.Set("Link", link);
  exports.Set("BpfObject", object);
  exports.Set("Stats", stats);
  exports.Set("setErrorClasses", Napi::Function::New(env, SetErrorClasses, "setErrorClasses"));
  exports.Set("libbpfLog", Napi::Function::New(env, LibbpfLog, "libbpfLog"));
  exports.Set("possibleCpus", Napi::Function::New(env, NumPossibleCpus, "possibleCpus"));
  exports.Set("createMap", Napi::Function::New(env, CreateMap, "createMap"));
  exports.Set("loadProgram", Napi::Function::New(env, LoadProgram, "loadProgram"));
  exports.Set("openObject", Napi::Function::New(env, OpenObject, "openObject"));
  exports.Set("attachXdp", Napi::Function::New(env, AttachXdp, "attachXdp"));
  exports.Set("attachTc", Napi::Function::New(env, AttachTc, "attachTc"));
  exports.Set("openPinned", Napi::Function::New(env, OpenPinned, "openPinned"));
  exports.Set("unpin", Napi::Function::New(env, Unpin, "unpin"));
  exports.Set("getById", Napi::Function::New(env, GetById, "getById"));
  exports.Set("enableStats", Napi::Function::New(env, EnableStats, "enableStats"));
  exports.Set("mountBpffs", Napi::Function::New(env, MountBpffs, "mountBpffs"));
  exports.Set("isBpffs", Napi::Function::New(env, IsBpffs, "isBpffs"));
  exports.Set("runInNetns", Napi::Function::New(env, RunInNetns, "runInNetns"));
  exports.Set("ifNameToIndex", Napi::Function::New(env, IfNameToIndex, "ifNameToIndex"));
  exports.Set("ifIndexToName", Napi::Function::New(env, IfIndexToName, "ifIndexToName"));
  return exports;
}
}  // namespace

}  // namespace sluice

static Napi::Object InitModule(Napi::Env env, Napi::Object exports) { return sluice::Init(env, exports); }

NODE_API_MODULE(sluice_bpf, InitModule)
