// ELF BPF objects through libbpf: open (file or memory), inspect and adjust before load, load, hand out maps/programs.
#include "handles.h"

#include <cerrno>
#include <cstring>

namespace sluice {

namespace {
struct ObjectInit {
  bpf_object* obj = nullptr;
  std::vector<uint8_t> image;
  std::string name;
};

// Split libbpf's log of a failed load into the verifier's part, if there is one.
bool ExtractVerifierLog(const std::vector<std::string>& lines, std::vector<std::string>* out) {
  bool in = false, found = false;
  for (const auto& line : lines) {
    if (line.find("-- BEGIN PROG LOAD LOG --") != std::string::npos) {
      in = true;
      found = true;
      out->clear();
      continue;
    }
    if (line.find("-- END PROG LOAD LOG --") != std::string::npos) {
      in = false;
      continue;
    }
    if (in) out->push_back(line);
  }
  return found && !out->empty();
}
}  // namespace

Napi::Function BpfObject::Define(Napi::Env env) {
  return DefineClass(env, "BpfObject",
                     {
                         InstanceAccessor<&BpfObject::GetName>("name"),
                         InstanceAccessor<&BpfObject::GetLoaded>("loaded"),
                         InstanceAccessor<&BpfObject::GetClosed>("closed"),
                         InstanceMethod<&BpfObject::Programs>("programs"),
                         InstanceMethod<&BpfObject::Maps>("maps"),
                         InstanceMethod<&BpfObject::SetMaxEntries>("setMaxEntries"),
                         InstanceMethod<&BpfObject::SetPinPath>("setPinPath"),
                         InstanceMethod<&BpfObject::SetAutoload>("setAutoload"),
                         InstanceMethod<&BpfObject::Load>("load"),
                         InstanceMethod<&BpfObject::GetMap>("map"),
                         InstanceMethod<&BpfObject::GetProgram>("program"),
                         InstanceMethod<&BpfObject::Close>("close"),
                     });
}

BpfObject::BpfObject(const Napi::CallbackInfo& info) : Napi::ObjectWrap<BpfObject>(info) {
  Napi::Env env = info.Env();
  if (info.Length() != 1 || !info[0].IsExternal())
    ThrowInvalid(env, "a BpfObject cannot be constructed directly: use openObject()");
  ObjectInit* init = info[0].As<Napi::External<ObjectInit>>().Data();
  obj_.reset(init->obj);
  init->obj = nullptr;
  image_ = std::move(init->image);
  name_ = init->name;
}

BpfObject::~BpfObject() { obj_.reset(); }

bpf_object* BpfObject::Obj(Napi::Env env) const {
  if (!obj_) ThrowClosed(env, "object " + Quote(name_) + " is closed");
  return obj_.get();
}

bpf_map* BpfObject::FindMap(Napi::Env env, const Napi::Value& v, const char* op) const {
  bpf_object* obj = Obj(env);
  std::string name = ArgString(env, v, std::string(op) + " in object " + Quote(name_) + ": map name");
  bpf_map* map = bpf_object__find_map_by_name(obj, name.c_str());
  if (!map) ThrowInvalid(env, std::string(op) + ": object " + Quote(name_) + " has no map " + Quote(name));
  return map;
}

bpf_program* BpfObject::FindProgram(Napi::Env env, const Napi::Value& v, const char* op) const {
  bpf_object* obj = Obj(env);
  std::string name = ArgString(env, v, std::string(op) + " in object " + Quote(name_) + ": program name");
  bpf_program* prog = bpf_object__find_program_by_name(obj, name.c_str());
  if (!prog) ThrowInvalid(env, std::string(op) + ": object " + Quote(name_) + " has no program " + Quote(name));
  return prog;
}

Napi::Value BpfObject::GetName(const Napi::CallbackInfo& info) { return Napi::String::New(info.Env(), name_); }
Napi::Value BpfObject::GetLoaded(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), loaded_); }
Napi::Value BpfObject::GetClosed(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), !obj_); }

Napi::Value BpfObject::Programs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  bpf_object* obj = Obj(env);
  Napi::Array out = Napi::Array::New(env);
  uint32_t i = 0;
  bpf_program* prog;
  bpf_object__for_each_program(prog, obj) {
    Napi::Object o = Napi::Object::New(env);
    o.Set("name", bpf_program__name(prog));
    o.Set("section", bpf_program__section_name(prog));
    o.Set("type", static_cast<uint32_t>(bpf_program__type(prog)));
    o.Set("expectedAttachType", static_cast<uint32_t>(bpf_program__expected_attach_type(prog)));
    o.Set("autoload", bpf_program__autoload(prog));
    o.Set("insnCount", static_cast<double>(bpf_program__insn_cnt(prog)));
    out.Set(i++, o);
  }
  return out;
}

Napi::Value BpfObject::Maps(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  bpf_object* obj = Obj(env);
  Napi::Array out = Napi::Array::New(env);
  uint32_t i = 0;
  bpf_map* map;
  bpf_object__for_each_map(map, obj) {
    Napi::Object o = Napi::Object::New(env);
    o.Set("name", bpf_map__name(map));
    o.Set("type", static_cast<uint32_t>(bpf_map__type(map)));
    o.Set("keySize", bpf_map__key_size(map));
    o.Set("valueSize", bpf_map__value_size(map));
    o.Set("maxEntries", bpf_map__max_entries(map));
    o.Set("flags", bpf_map__map_flags(map));
    o.Set("internal", bpf_map__is_internal(map));
    const char* pin = bpf_map__pin_path(map);
    o.Set("pinPath", pin ? Napi::Value(Napi::String::New(env, pin)) : env.Null());
    out.Set(i++, o);
  }
  return out;
}

Napi::Value BpfObject::SetMaxEntries(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  bpf_map* map = FindMap(env, info[0], "resize map");
  std::string what = "resize map " + Quote(bpf_map__name(map));
  uint32_t n = ArgU32(env, info[1], what + ": maxEntries");
  if (loaded_) ThrowState(env, what + ": object " + Quote(name_) + " is already loaded");
  int r = bpf_map__set_max_entries(map, n);
  if (r < 0) ThrowSyscall(env, what, "bpf_map__set_max_entries", -r);
  return env.Undefined();
}

Napi::Value BpfObject::SetPinPath(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  bpf_map* map = FindMap(env, info[0], "set pin path of map");
  std::string what = "set pin path of map " + Quote(bpf_map__name(map));
  std::string path;
  bool clear = info[1].IsNull();
  if (!clear) path = ArgString(env, info[1], what + ": path");
  if (!clear && (path.empty() || path[0] != '/')) ThrowInvalid(env, what + ": path must be absolute, got " + Quote(path));
  if (loaded_) ThrowState(env, what + ": object " + Quote(name_) + " is already loaded");
  int r = bpf_map__set_pin_path(map, clear ? nullptr : path.c_str());
  if (r < 0) ThrowSyscall(env, what, "bpf_map__set_pin_path", -r);
  return env.Undefined();
}

Napi::Value BpfObject::SetAutoload(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  bpf_program* prog = FindProgram(env, info[0], "set autoload of program");
  std::string what = "set autoload of program " + Quote(bpf_program__name(prog));
  bool on = ArgBool(env, info[1], what + ": autoload");
  if (loaded_) ThrowState(env, what + ": object " + Quote(name_) + " is already loaded");
  int r = bpf_program__set_autoload(prog, on);
  if (r < 0) ThrowSyscall(env, what, "bpf_program__set_autoload", -r);
  return env.Undefined();
}

Napi::Value BpfObject::Load(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  bpf_object* obj = Obj(env);
  std::string what = "load object " + Quote(name_);
  if (loaded_) ThrowState(env, what + ": already loaded");
  uint64_t mark = LogMark();
  int r;
  {
    ProfilerSignalGuard quiet;
    r = bpf_object__load(obj);
  }
  if (r < 0) {
    std::vector<std::string> log = LogSince(mark);
    std::vector<std::string> verifier;
    if (ExtractVerifierLog(log, &verifier)) {
      Napi::Value e = MakeVerifierError(env, what, -r, verifier);
      e.As<Napi::Object>().Set("libbpfLog", ToJsArray(env, log));
      ThrowValue(env, e);
    }
    ThrowSyscall(env, what, "bpf_object__load", -r, &log);
  }
  loaded_ = true;
  return env.Undefined();
}

Napi::Value BpfObject::GetMap(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  bpf_map* map = FindMap(env, info[0], "get map");
  std::string name = bpf_map__name(map);
  if (!loaded_) ThrowState(env, "get map " + Quote(name) + ": object " + Quote(name_) + " is not loaded yet");
  int fd = bpf_map__fd(map);
  if (fd < 0) ThrowState(env, "get map " + Quote(name) + ": the map was not created");
  int dup = DupFd(fd);
  if (dup < 0) ThrowSyscall(env, "get map " + Quote(name), "fcntl", -dup);
  return Map::Wrap(env, Fd(dup), name);
}

Napi::Value BpfObject::GetProgram(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  bpf_program* prog = FindProgram(env, info[0], "get program");
  std::string name = bpf_program__name(prog);
  if (!loaded_) ThrowState(env, "get program " + Quote(name) + ": object " + Quote(name_) + " is not loaded yet");
  int fd = bpf_program__fd(prog);
  if (fd < 0) ThrowState(env, "get program " + Quote(name) + ": the program was not loaded (autoload off)");
  int dup = DupFd(fd);
  if (dup < 0) ThrowSyscall(env, "get program " + Quote(name), "fcntl", -dup);
  return Program::Wrap(env, Fd(dup), name);
}

Napi::Value BpfObject::Close(const Napi::CallbackInfo& info) {
  obj_.reset();
  image_.clear();
  return info.Env().Undefined();
}

// openObject(pathOrBuffer, name?) → BpfObject (not loaded)
Napi::Value OpenObject(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  ObjectInit init;
  std::string name;
  if (!info[1].IsUndefined()) name = ArgString(env, info[1], "open object: name");
  uint64_t mark = LogMark();
  bpf_object* obj = nullptr;
  std::string what;
  if (info[0].IsString()) {
    std::string path = ArgString(env, info[0], "open object: path");
    if (path.empty()) ThrowInvalid(env, "open object: path must not be empty");
    what = "open object " + Quote(path);
    LIBBPF_OPTS(bpf_object_open_opts, opts, .object_name = name.empty() ? nullptr : name.c_str());
    obj = bpf_object__open_file(path.c_str(), &opts);
    if (name.empty()) {
      size_t slash = path.rfind('/');
      name = slash == std::string::npos ? path : path.substr(slash + 1);
    }
  } else if (IsBytes(info[0])) {
    Bytes b = ArgBytes(env, info[0], "open object: image");
    if (b.len == 0) ThrowInvalid(env, "open object: the ELF image is empty");
    if (name.empty()) name = "object";
    what = "open object " + Quote(name);
    init.image.assign(b.data, b.data + b.len);
    LIBBPF_OPTS(bpf_object_open_opts, opts, .object_name = name.c_str());
    obj = bpf_object__open_mem(init.image.data(), init.image.size(), &opts);
  } else {
    ThrowInvalid(env, "open object: expected a file path or a Buffer holding an ELF image");
  }
  if (!obj) {
    int err = errno ? errno : EINVAL;
    std::vector<std::string> log = LogSince(mark);
    ThrowSyscall(env, what, "bpf_object__open", err, &log);
  }
  init.obj = obj;
  init.name = name;
  Napi::Object wrapped;
  try {
    wrapped = Data(env)->objectCtor.New({Napi::External<ObjectInit>::New(env, &init)});
  } catch (...) {
    if (init.obj) bpf_object__close(init.obj);
    throw;
  }
  return wrapped;
}

}  // namespace sluice
