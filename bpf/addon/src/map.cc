// BPF maps: create, element CRUD, key iteration, per-CPU values, fd values, async batch operations.
#include "handles.h"

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace sluice {

namespace {
constexpr int kENOTSUPP = 524;  // the kernel's internal "not supported", seen by user space as-is

bool HoldsMaps(uint32_t type) {
  return type == BPF_MAP_TYPE_ARRAY_OF_MAPS || type == BPF_MAP_TYPE_HASH_OF_MAPS;
}

size_t RoundUp8(size_t n) { return (n + 7) & ~static_cast<size_t>(7); }

std::string MapWhat(const char* op, const std::string& name) { return std::string(op) + " map " + Quote(name); }

bool IsArrayLike(uint32_t type) {
  return type == BPF_MAP_TYPE_ARRAY || type == BPF_MAP_TYPE_PERCPU_ARRAY || type == BPF_MAP_TYPE_PROG_ARRAY ||
         type == BPF_MAP_TYPE_ARRAY_OF_MAPS || type == BPF_MAP_TYPE_PERF_EVENT_ARRAY || type == BPF_MAP_TYPE_CGROUP_ARRAY;
}

// What a failed element operation means for this map, where errno alone is cryptic.
std::string MapReason(uint32_t type, uint32_t maxEntries, int err) {
  switch (err) {
    case ENOENT: return "no such key (flag \"exist\")";
    case EEXIST: return "key already exists (flag \"noexist\")";
    case E2BIG:
      return IsArrayLike(type) ? "index out of range (max entries " + std::to_string(maxEntries) + ")"
                               : "map is full (max entries " + std::to_string(maxEntries) + ")";
    case ENOMEM: return "out of memory (the map may be full: max entries " + std::to_string(maxEntries) + ")";
    default: return "";
  }
}
}  // namespace

int QueryMapInfo(int fd, bpf_map_info* out) {
  memset(out, 0, sizeof *out);
  __u32 len = sizeof *out;
  int r = bpf_obj_get_info_by_fd(fd, out, &len);
  return r < 0 ? -errno : 0;
}

Napi::Function Map::Define(Napi::Env env) {
  return DefineClass(env, "Map",
                     {
                         InstanceAccessor<&Map::GetFd>("fd"),
                         InstanceAccessor<&Map::GetName>("name"),
                         InstanceAccessor<&Map::GetType>("type"),
                         InstanceAccessor<&Map::GetKeySize>("keySize"),
                         InstanceAccessor<&Map::GetValueSize>("valueSize"),
                         InstanceAccessor<&Map::GetMaxEntries>("maxEntries"),
                         InstanceAccessor<&Map::GetFlags>("flags"),
                         InstanceAccessor<&Map::GetId>("id"),
                         InstanceAccessor<&Map::GetClosed>("closed"),
                         InstanceAccessor<&Map::GetPerCpu>("perCpu"),
                         InstanceMethod<&Map::Lookup>("lookup"),
                         InstanceMethod<&Map::LookupInto>("lookupInto"),
                         InstanceMethod<&Map::UpdateFd>("updateFd"),
                         InstanceMethod<&Map::Delete>("delete"),
                         InstanceMethod<&Map::NextKey>("nextKey"),
                         InstanceMethod<&Map::UpdateBatch>("updateBatch"),
                         InstanceMethod<&Map::UpdateBatchSync>("updateBatchSync"),
                         InstanceMethod<&Map::LookupBatch>("lookupBatch"),
                         InstanceMethod<&Map::DeleteBatch>("deleteBatch"),
                         InstanceMethod<&Map::Info>("info"),
                         InstanceMethod<&Map::Pin>("pin"),
                         InstanceMethod<&Map::Close>("close"),
                     });
}

Napi::Object Map::Wrap(Napi::Env env, Fd fd, const std::string& name) {
  Init init{std::move(fd), name};
  return Data(env)->mapCtor.New({Napi::External<Init>::New(env, &init)});
}

Map::Map(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Map>(info) {
  Napi::Env env = info.Env();
  if (info.Length() != 1 || !info[0].IsExternal())
    ThrowInvalid(env, "a Map cannot be constructed directly: use createMap(), an object's map() or openPinned()");
  Init* init = info[0].As<Napi::External<Init>>().Data();
  bpf_map_info mi;
  int r = QueryMapInfo(init->fd.Get(), &mi);
  if (r < 0) ThrowSyscall(env, "read map info", "bpf_obj_get_info_by_fd", -r);
  fd_ = std::move(init->fd);
  name_ = init->name.empty() ? std::string(mi.name) : init->name;
  type_ = mi.type;
  keySize_ = mi.key_size;
  valueSize_ = mi.value_size;
  maxEntries_ = mi.max_entries;
  flags_ = mi.map_flags;
  id_ = mi.id;
  perCpu_ = IsPerCpuMapType(type_);
  InstallUpdate(env, info.This().As<Napi::Object>());
}

Map::~Map() {
  if (updateTarget_) updateTarget_->map = nullptr;
}

int Map::FdOrThrow(Napi::Env env) const {
  if (!fd_.Valid()) ThrowClosed(env, "map " + Quote(name_) + " is closed");
  return fd_.Get();
}

size_t Map::StoredValueSize() const { return perCpu_ ? RoundUp8(valueSize_) * PossibleCpus() : valueSize_; }

void Map::CheckKey(Napi::Env env, const char* op, const Bytes& key) const {
  if (key.len != keySize_)
    ThrowInvalid(env, MapWhat(op, name_) + ": key is " + std::to_string(key.len) + " bytes, map expects " +
                          std::to_string(keySize_));
}

// Update flags: BPF_ANY, BPF_NOEXIST or BPF_EXIST, optionally | BPF_F_LOCK. False for anything else.
static bool UpdateFlags(double d, uint32_t* out) {
  uint32_t f = static_cast<uint32_t>(d);
  if (!(d >= 0 && d <= 6) || static_cast<double>(f) != d || (f & 3) == 3) return false;
  *out = f;
  return true;
}

uint32_t Map::CheckFlags(Napi::Env env, const char* op, const Napi::Value& v) const {
  if (v.IsEmpty() || v.IsUndefined()) return BPF_ANY;
  uint32_t f;
  if (!v.IsNumber() || !UpdateFlags(v.As<Napi::Number>().DoubleValue(), &f))
    ThrowInvalid(env, MapWhat(op, name_) + ": flags must be 0 (any), 1 (noexist) or 2 (exist), optionally | 4 (lock)");
  return f;
}

void Map::UpdateElem(Napi::Env env, const void* key, const void* value, uint32_t flags) const {
  if (bpf_map_update_elem(fd_.Get(), key, value, flags) < 0) {
    int err = errno;
    ThrowSyscallReason(env, MapWhat("update", name_), MapReason(type_, maxEntries_, err), "bpf_map_update_elem", err);
  }
}

#define SLUICE_GETTER(fn, expr) \
  Napi::Value Map::fn(const Napi::CallbackInfo& info) { return expr; }
SLUICE_GETTER(GetFd, Napi::Number::New(info.Env(), fd_.Get()))
SLUICE_GETTER(GetName, Napi::String::New(info.Env(), name_))
SLUICE_GETTER(GetType, Napi::Number::New(info.Env(), type_))
SLUICE_GETTER(GetKeySize, Napi::Number::New(info.Env(), keySize_))
SLUICE_GETTER(GetValueSize, Napi::Number::New(info.Env(), valueSize_))
SLUICE_GETTER(GetMaxEntries, Napi::Number::New(info.Env(), maxEntries_))
SLUICE_GETTER(GetFlags, Napi::Number::New(info.Env(), flags_))
SLUICE_GETTER(GetId, Napi::Number::New(info.Env(), id_))
SLUICE_GETTER(GetClosed, Napi::Boolean::New(info.Env(), !fd_.Valid()))
SLUICE_GETTER(GetPerCpu, Napi::Boolean::New(info.Env(), perCpu_))
#undef SLUICE_GETTER

// lookup(key) → Buffer | Buffer[] (per-CPU) | null
Napi::Value Map::Lookup(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = FdOrThrow(env);
  Bytes key;
  if (!GetBytes(env, info[0], &key)) ThrowInvalid(env, MapWhat("look up in", name_) + ": key must be a Buffer or Uint8Array");
  CheckKey(env, "look up in", key);
  size_t stored = StoredValueSize();
  if (!perCpu_) {
    Napi::Buffer<uint8_t> out = Napi::Buffer<uint8_t>::New(env, stored);
    if (bpf_map_lookup_elem(fd, key.data, out.Data()) < 0) {
      int err = errno;
      if (err == ENOENT) return env.Null();
      ThrowSyscall(env, MapWhat("look up in", name_), "bpf_map_lookup_elem", err);
    }
    return out;
  }
  scratch_.resize(stored);
  if (bpf_map_lookup_elem(fd, key.data, scratch_.data()) < 0) {
    int err = errno;
    if (err == ENOENT) return env.Null();
    ThrowSyscall(env, MapWhat("look up in", name_), "bpf_map_lookup_elem", err);
  }
  uint32_t cpus = PossibleCpus();
  size_t stride = RoundUp8(valueSize_);
  Napi::Array arr = Napi::Array::New(env, cpus);
  for (uint32_t c = 0; c < cpus; c++)
    arr.Set(c, Napi::Buffer<uint8_t>::Copy(env, scratch_.data() + c * stride, valueSize_));
  return arr;
}

// lookupInto(key, out) → boolean; out holds valueSize bytes (per-CPU: round8(valueSize) × possible CPUs).
Napi::Value Map::LookupInto(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = FdOrThrow(env);
  Bytes key, out;
  if (!GetBytes(env, info[0], &key)) ThrowInvalid(env, MapWhat("look up in", name_) + ": key must be a Buffer or Uint8Array");
  if (!GetBytes(env, info[1], &out)) ThrowInvalid(env, MapWhat("look up in", name_) + ": output must be a Buffer or Uint8Array");
  CheckKey(env, "look up in", key);
  if (out.len < StoredValueSize())
    ThrowInvalid(env, MapWhat("look up in", name_) + ": output is " + std::to_string(out.len) +
                          " bytes, map values need " + std::to_string(StoredValueSize()));
  if (bpf_map_lookup_elem(fd, key.data, out.data) < 0) {
    int err = errno;
    if (err == ENOENT) return Napi::Boolean::New(env, false);
    ThrowSyscall(env, MapWhat("look up in", name_), "bpf_map_lookup_elem", err);
  }
  return Napi::Boolean::New(env, true);
}

// update(key, value, flags?) is an own function of each Map, bound to it through N-API callback
// data. Single-element updates are the controller's rule writes; where the kernel isolates page
// tables every syscall leaves the TLB cold, and each N-API step after it (an unwrap of `this`
// above all, a property lookup) costs hundreds of ns. The common case (a plain map, right sizes)
// goes straight to the syscall; anything else goes to Update, which validates and throws.
void Map::InstallUpdate(Napi::Env env, Napi::Object self) {
  updateTarget_ = std::make_shared<UpdateTarget>(UpdateTarget{this});
  auto* holder = new std::shared_ptr<UpdateTarget>(updateTarget_);
  napi_value fn;
  if (napi_create_function(env, "update", NAPI_AUTO_LENGTH, &Map::UpdateBound, holder, &fn) != napi_ok ||
      napi_add_finalizer(
          env, fn, holder,
          [](napi_env, void* data, void*) { delete static_cast<std::shared_ptr<UpdateTarget>*>(data); }, nullptr,
          nullptr) != napi_ok) {
    delete holder;
    ThrowState(env, "create map \"" + name_ + "\": could not create its update function");
  }
  self.DefineProperty(Napi::PropertyDescriptor::Value("update", Napi::Value(env, fn), napi_default));
}

napi_value Map::UpdateBound(napi_env env, napi_callback_info cbinfo) {
  size_t argc = 3;
  napi_value argv[3];
  void* data = nullptr;
  if (napi_get_cb_info(env, cbinfo, &argc, argv, nullptr, &data) != napi_ok) return nullptr;
  Map* map = (*static_cast<std::shared_ptr<UpdateTarget>*>(data))->map;
  try {
    if (map == nullptr) ThrowClosed(Napi::Env(env), "map is closed: its handle was garbage-collected");
    if (argc >= 2 && map->UpdatePlain(env, argv[0], argv[1], argc == 3 ? argv[2] : nullptr)) return nullptr;
    Napi::CallbackInfo info(env, cbinfo);
    return map->Update(info);
  } catch (const Napi::Error& e) {
    e.ThrowAsJavaScriptException();
    return nullptr;
  }
}

// The common case of update: true when done, false when the arguments need Update's full checks.
bool Map::UpdatePlain(napi_env env, napi_value key, napi_value value, napi_value flagsValue) {
  if (perCpu_ || !fd_.Valid()) return false;
  Bytes k, v;
  if (!GetBytes(env, key, &k) || k.len != keySize_ || !GetBytes(env, value, &v) || v.len != valueSize_) return false;
  uint32_t flags = BPF_ANY;
  if (flagsValue != nullptr) {
    // One call: napi_get_value_double fails for anything but a number (undefined included).
    double d;
    if (napi_get_value_double(env, flagsValue, &d) != napi_ok || !UpdateFlags(d, &flags)) return false;
  }
  UpdateElem(Napi::Env(env), k.data, v.data, flags);
  return true;
}

// update(key, value, flags?) — value: Buffer (per-CPU: one value for every CPU, or the raw
// round8(valueSize) × CPUs layout) or, for per-CPU maps, an array with one Buffer per possible CPU.
Napi::Value Map::Update(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  FdOrThrow(env);  // a closed map throws before its arguments are read
  Bytes key;
  if (!GetBytes(env, info[0], &key)) ThrowInvalid(env, MapWhat("update", name_) + ": key must be a Buffer or Uint8Array");
  CheckKey(env, "update", key);
  uint32_t flags = CheckFlags(env, "update", info[2]);
  const void* value = nullptr;
  if (!perCpu_) {
    Bytes v;
    if (!GetBytes(env, info[1], &v)) ThrowInvalid(env, MapWhat("update", name_) + ": value must be a Buffer or Uint8Array");
    if (v.len != valueSize_)
      ThrowInvalid(env, MapWhat("update", name_) + ": value is " + std::to_string(v.len) + " bytes, map expects " +
                            std::to_string(valueSize_));
    value = v.data;
  } else {
    uint32_t cpus = PossibleCpus();
    size_t stride = RoundUp8(valueSize_);
    scratch_.assign(stride * cpus, 0);
    if (info[1].IsArray()) {
      Napi::Array arr = info[1].As<Napi::Array>();
      if (arr.Length() != cpus)
        ThrowInvalid(env, MapWhat("update", name_) + ": per-CPU value has " + std::to_string(arr.Length()) +
                              " entries, the machine has " + std::to_string(cpus) + " possible CPUs");
      for (uint32_t c = 0; c < cpus; c++) {
        Napi::Value item = arr.Get(c);
        if (!IsBytes(item))
          ThrowInvalid(env, MapWhat("update", name_) + ": per-CPU value " + std::to_string(c) + " must be a Buffer or Uint8Array");
        Bytes b = ArgBytes(env, item, "value");
        if (b.len != valueSize_)
          ThrowInvalid(env, MapWhat("update", name_) + ": per-CPU value " + std::to_string(c) + " is " +
                                std::to_string(b.len) + " bytes, map expects " + std::to_string(valueSize_));
        memcpy(scratch_.data() + c * stride, b.data, b.len);
      }
    } else if (IsBytes(info[1])) {
      Bytes b = ArgBytes(env, info[1], "value");
      if (b.len == valueSize_) {
        for (uint32_t c = 0; c < cpus; c++) memcpy(scratch_.data() + c * stride, b.data, b.len);
      } else if (b.len == scratch_.size()) {
        memcpy(scratch_.data(), b.data, b.len);
      } else {
        ThrowInvalid(env, MapWhat("update", name_) + ": value is " + std::to_string(b.len) + " bytes, map expects " +
                              std::to_string(valueSize_) + " (or " + std::to_string(scratch_.size()) + " for all CPUs)");
      }
    } else {
      ThrowInvalid(env, MapWhat("update", name_) + ": value must be a Buffer or an array of per-CPU Buffers");
    }
    value = scratch_.data();
  }
  UpdateElem(env, key.data, value, flags);
  return env.Undefined();
}

// updateFd(key, handle, flags?) — program arrays take a Program, map-in-maps take a Map.
Napi::Value Map::UpdateFd(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = FdOrThrow(env);
  if (!IsBytes(info[0])) ThrowInvalid(env, MapWhat("update", name_) + ": key must be a Buffer or Uint8Array");
  Bytes key = ArgBytes(env, info[0], "key");
  CheckKey(env, "update", key);
  uint32_t flags = CheckFlags(env, "update", info[2]);
  int valueFd;
  AddonData* data = Data(env);
  if (type_ == BPF_MAP_TYPE_PROG_ARRAY) {
    Program* p = UnwrapAs<Program>(env, info[1], data->programCtor,
                                   MapWhat("update", name_) + ": value must be a Program for a prog array");
    valueFd = p->FdOrThrow(env);
  } else if (HoldsMaps(type_)) {
    Map* m = UnwrapAs<Map>(env, info[1], data->mapCtor, MapWhat("update", name_) + ": value must be a Map for a map-in-map");
    valueFd = m->FdOrThrow(env);
  } else {
    ThrowInvalid(env, MapWhat("update", name_) + ": map type " + std::to_string(type_) + " does not hold programs or maps");
  }
  uint32_t v = static_cast<uint32_t>(valueFd);
  if (bpf_map_update_elem(fd, key.data, &v, flags) < 0)
    ThrowSyscall(env, MapWhat("update", name_), "bpf_map_update_elem", errno);
  return env.Undefined();
}

// delete(key) → true if it existed
Napi::Value Map::Delete(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = FdOrThrow(env);
  Bytes key;
  if (!GetBytes(env, info[0], &key)) ThrowInvalid(env, MapWhat("delete from", name_) + ": key must be a Buffer or Uint8Array");
  CheckKey(env, "delete from", key);
  if (bpf_map_delete_elem(fd, key.data) < 0) {
    int err = errno;
    if (err == ENOENT) return Napi::Boolean::New(env, false);
    if (err == EINVAL && IsArrayLike(type_))
      ThrowSyscallReason(env, MapWhat("delete from", name_), "array elements cannot be deleted (write zeroes instead)",
                         "bpf_map_delete_elem", err);
    ThrowSyscall(env, MapWhat("delete from", name_), "bpf_map_delete_elem", err);
  }
  return Napi::Boolean::New(env, true);
}

// nextKey(key | null) → Buffer | null
Napi::Value Map::NextKey(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = FdOrThrow(env);
  const void* prev = nullptr;
  if (!info[0].IsNull() && !info[0].IsUndefined()) {
    if (!IsBytes(info[0])) ThrowInvalid(env, MapWhat("iterate", name_) + ": key must be a Buffer, Uint8Array or null");
    Bytes key = ArgBytes(env, info[0], "key");
    CheckKey(env, "iterate", key);
    prev = key.data;
  }
  Napi::Buffer<uint8_t> out = Napi::Buffer<uint8_t>::New(env, keySize_);
  if (bpf_map_get_next_key(fd, prev, out.Data()) < 0) {
    int err = errno;
    if (err == ENOENT) return env.Null();
    ThrowSyscall(env, MapWhat("iterate", name_), "bpf_map_get_next_key", err);
  }
  return out;
}

// ---- batch ----------------------------------------------------------------------------------

namespace {

// Lookup output is gathered in chunks of at most this many elements and bytes (or one batch, if
// larger): memory follows the elements the map holds, not its max_entries.
constexpr uint32_t kLookupChunkEntries = 65536;
constexpr size_t kLookupChunkBytes = 4 << 20;

// Runs one batch operation on a worker thread, on its own dup of the map fd, so closing the
// Map meanwhile is safe. Its input is a copy made on the JavaScript thread: the worker never
// reads JavaScript memory, which user code could change, or detach by transferring its
// ArrayBuffer, while the worker runs. Falls back to a per-element loop where the kernel has no
// batch op.
class BatchWorker : public Napi::AsyncWorker {
 public:
  enum class Op { Update, Lookup, Delete };

  BatchWorker(Napi::Env env, Op op, Fd fd, std::string name, uint32_t type, uint32_t keySize, size_t valueSize,
              uint32_t maxEntries)
      : Napi::AsyncWorker(env, "sluice:mapBatch"),
        type_(type),
        deferred_(Napi::Promise::Deferred::New(env)),
        op_(op),
        fd_(std::move(fd)),
        name_(std::move(name)),
        keySize_(keySize),
        valueSize_(valueSize),
        maxEntries_(maxEntries) {}

  // Copies the first `count` keys (and values, if given): call on the JavaScript thread.
  void SetInput(const Bytes& keys, const Bytes& values, uint32_t count, uint32_t flags) {
    keys_.assign(keys.data, keys.data + static_cast<size_t>(count) * keySize_);
    if (values.data != nullptr) values_.assign(values.data, values.data + count * valueSize_);
    count_ = count;
    flags_ = flags;
  }

  Napi::Promise Promise() { return deferred_.Promise(); }

 protected:
  void Execute() override {
    switch (op_) {
      case Op::Update: DoUpdate(); break;
      case Op::Delete: DoDelete(); break;
      case Op::Lookup: DoLookup(); break;
    }
  }

  void OnOK() override {
    Napi::Env env = Env();
    if (err_ != 0) {
      const char* verb = op_ == Op::Update ? "update" : op_ == Op::Delete ? "delete from" : "look up in";
      Napi::Value e = MakeSyscallError(env, std::string("batch ") + verb + " map " + Quote(name_), syscall_, err_,
                                       nullptr, op_ == Op::Update ? MapReason(type_, maxEntries_, err_) : "");
      e.As<Napi::Object>().Set("processed", done_);
      deferred_.Reject(e);
      return;
    }
    Napi::Object result = Napi::Object::New(env);
    result.Set("count", done_);
    result.Set("fallback", fellBack_);
    if (op_ == Op::Lookup) {
      Napi::Buffer<uint8_t> keys = Napi::Buffer<uint8_t>::New(env, static_cast<size_t>(done_) * keySize_);
      Napi::Buffer<uint8_t> values = Napi::Buffer<uint8_t>::New(env, static_cast<size_t>(done_) * valueSize_);
      size_t at = 0;
      for (const Chunk& c : chunks_) {
        memcpy(keys.Data() + at * keySize_, c.keys.data(), c.used * keySize_);
        memcpy(values.Data() + at * valueSize_, c.values.data(), c.used * valueSize_);
        at += c.used;
      }
      chunks_.clear();
      result.Set("keys", keys);
      result.Set("values", values);
    }
    deferred_.Resolve(result);
  }

  void OnError(const Napi::Error& e) override { deferred_.Reject(e.Value()); }

 private:
  static bool NoBatch(int err) { return err == kENOTSUPP || err == EOPNOTSUPP || err == EINVAL; }

  void DoUpdate() {
    LIBBPF_OPTS(bpf_map_batch_opts, opts, .elem_flags = flags_, .flags = 0);
    uint32_t n = count_;
    int r = count_ == 0 ? 0 : bpf_map_update_batch(fd_.Get(), keys_.data(), values_.data(), &n, &opts);
    if (r == 0) {
      done_ = count_;
      return;
    }
    int err = -r;
    if (n == 0 && NoBatch(err)) {
      fellBack_ = true;
      for (uint32_t i = 0; i < count_; i++) {
        if (bpf_map_update_elem(fd_.Get(), keys_.data() + static_cast<size_t>(i) * keySize_,
                                values_.data() + static_cast<size_t>(i) * valueSize_, flags_) < 0) {
          err_ = errno;
          syscall_ = "bpf_map_update_elem";
          return;
        }
        done_ = i + 1;
      }
      return;
    }
    done_ = n;
    err_ = err;
    syscall_ = "bpf_map_update_batch";
  }

  void DoDelete() {
    LIBBPF_OPTS(bpf_map_batch_opts, opts, .elem_flags = 0, .flags = 0);
    uint32_t n = count_;
    int r = count_ == 0 ? 0 : bpf_map_delete_batch(fd_.Get(), keys_.data(), &n, &opts);
    if (r == 0) {
      done_ = count_;
      return;
    }
    int err = -r;
    if (n == 0 && NoBatch(err)) {
      fellBack_ = true;
      for (uint32_t i = 0; i < count_; i++) {
        if (bpf_map_delete_elem(fd_.Get(), keys_.data() + static_cast<size_t>(i) * keySize_) < 0) {
          err_ = errno;
          syscall_ = "bpf_map_delete_elem";
          return;
        }
        done_ = i + 1;
      }
      return;
    }
    done_ = n;
    err_ = err;
    syscall_ = "bpf_map_delete_batch";
  }

  // Lookup output: keys and values of `used` elements, room for `capacity`.
  struct Chunk {
    std::vector<uint8_t> keys, values;
    uint32_t used = 0, capacity = 0;
  };

  // The chunk to write the next `entries` elements to: the last one if they fit, else a new one
  // within kLookupChunkEntries and kLookupChunkBytes (no more than the map can hold, no fewer
  // than `entries`).
  Chunk& Room(uint32_t entries) {
    if (chunks_.empty() || chunks_.back().capacity - chunks_.back().used < entries) {
      size_t elementSize = std::max<size_t>(keySize_ + valueSize_, 1);
      size_t bound = std::min<size_t>(
          {kLookupChunkEntries, kLookupChunkBytes / elementSize, std::max<uint32_t>(maxEntries_, 1)});
      Chunk c;
      c.capacity = std::max(entries, static_cast<uint32_t>(bound));
      c.keys.resize(static_cast<size_t>(c.capacity) * keySize_);
      c.values.resize(c.capacity * valueSize_);
      chunks_.push_back(std::move(c));
    }
    return chunks_.back();
  }

  void DoLookup() {
    size_t tokenSize = std::max<size_t>(keySize_, 8);
    std::vector<uint8_t> inTok(tokenSize), outTok(tokenSize);
    uint32_t batch = 4096;
    bool first = true;
    uint64_t total = 0;
    for (;;) {
      Chunk& c = Room(batch);
      LIBBPF_OPTS(bpf_map_batch_opts, opts, .elem_flags = 0, .flags = 0);
      uint32_t n = batch;
      int r = bpf_map_lookup_batch(fd_.Get(), first ? nullptr : inTok.data(), outTok.data(),
                                   c.keys.data() + static_cast<size_t>(c.used) * keySize_,
                                   c.values.data() + c.used * valueSize_, &n, &opts);
      if (r < 0) {
        int err = -r;
        if (err == ENOENT) {
          c.used += n;
          total += n;
          break;
        }
        if (err == ENOSPC && n == 0 && batch < (1u << 24)) {
          batch *= 2;  // a hash bucket holds more entries than fit: retry the same position
          continue;
        }
        if (first && n == 0 && NoBatch(err)) {
          LookupByIteration();
          return;
        }
        err_ = err;
        syscall_ = "bpf_map_lookup_batch";
        done_ = static_cast<uint32_t>(total);
        return;
      }
      c.used += n;
      total += n;
      first = false;
      std::swap(inTok, outTok);
    }
    done_ = static_cast<uint32_t>(total);
  }

  void LookupByIteration() {
    fellBack_ = true;
    chunks_.clear();
    std::vector<uint8_t> key(keySize_), next(keySize_);
    uint64_t total = 0;
    bool first = true;
    for (;;) {
      if (bpf_map_get_next_key(fd_.Get(), first ? nullptr : key.data(), next.data()) < 0) {
        if (errno == ENOENT) break;
        err_ = errno;
        syscall_ = "bpf_map_get_next_key";
        break;
      }
      first = false;
      key.swap(next);
      Chunk& c = Room(1);
      if (bpf_map_lookup_elem(fd_.Get(), key.data(), c.values.data() + c.used * valueSize_) < 0) {
        if (errno == ENOENT) continue;  // deleted meanwhile
        err_ = errno;
        syscall_ = "bpf_map_lookup_elem";
        break;
      }
      memcpy(c.keys.data() + static_cast<size_t>(c.used) * keySize_, key.data(), keySize_);
      c.used++;
      total++;
    }
    done_ = static_cast<uint32_t>(total);
  }

  uint32_t type_;
  Napi::Promise::Deferred deferred_;
  Op op_;
  Fd fd_;
  std::string name_;
  uint32_t keySize_;
  size_t valueSize_;
  uint32_t maxEntries_;
  std::vector<uint8_t> keys_, values_;  // the input, copied
  uint32_t count_ = 0, flags_ = 0;
  uint32_t done_ = 0;
  int err_ = 0;
  const char* syscall_ = "";
  bool fellBack_ = false;
  std::vector<Chunk> chunks_;
};

uint32_t BatchCount(Napi::Env env, const Napi::Value& v, const std::string& what, size_t available) {
  if (v.IsUndefined()) {
    if (available > 0xffffffffu) ThrowInvalid(env, what + ": too many entries for one batch");
    return static_cast<uint32_t>(available);
  }
  uint32_t count = ArgU32(env, v, what + ": count");
  if (count > available)
    ThrowInvalid(env, what + ": count " + std::to_string(count) + " is more than the " + std::to_string(available) +
                          " entries the buffers hold");
  return count;
}

}  // namespace

// The arguments of updateBatch and updateBatchSync, checked against the map's sizes.
Map::UpdateBatchArgs Map::UpdateArgs(Napi::Env env, const Napi::CallbackInfo& info, const std::string& what) {
  UpdateBatchArgs a;
  a.keys = ArgBytes(env, info[0], what + ": keys");
  a.values = ArgBytes(env, info[1], what + ": values");
  a.valueSize = StoredValueSize();
  if (keySize_ == 0 || a.keys.len % keySize_ != 0)
    ThrowInvalid(env, what + ": keys are " + std::to_string(a.keys.len) + " bytes, not a multiple of the key size " +
                          std::to_string(keySize_));
  if (a.valueSize == 0 || a.values.len % a.valueSize != 0)
    ThrowInvalid(env, what + ": values are " + std::to_string(a.values.len) +
                          " bytes, not a multiple of the value size " + std::to_string(a.valueSize));
  size_t nk = a.keys.len / keySize_, nv = a.values.len / a.valueSize;
  if (nk != nv)
    ThrowInvalid(env, what + ": " + std::to_string(nk) + " keys but " + std::to_string(nv) + " values");
  a.count = BatchCount(env, info[2], what, nk);
  a.flags = CheckFlags(env, "batch update", info[3]);
  return a;
}

// updateBatch(keys, values, count?, flags?) → Promise<{count, fallback}>
Napi::Value Map::UpdateBatch(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = FdOrThrow(env);
  std::string what = "batch update map " + Quote(name_);
  UpdateBatchArgs a = UpdateArgs(env, info, what);
  int dup = DupFd(fd);
  if (dup < 0) ThrowSyscall(env, what, "fcntl", -dup);
  auto* worker = new BatchWorker(env, BatchWorker::Op::Update, Fd(dup), name_, type_, keySize_, a.valueSize, maxEntries_);
  worker->SetInput(a.keys, a.values, a.count, a.flags);
  Napi::Promise p = worker->Promise();
  worker->Queue();
  return p;
}

// updateBatchSync(keys, values, count?, flags?) → {count, fallback}: the same batch on this
// thread, for a few dozen entries, where the trip to a worker and back costs more than the write.
Napi::Value Map::UpdateBatchSync(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = FdOrThrow(env);
  std::string what = "batch update map " + Quote(name_);
  UpdateBatchArgs a = UpdateArgs(env, info, what);
  LIBBPF_OPTS(bpf_map_batch_opts, opts, .elem_flags = a.flags, .flags = 0);
  uint32_t n = a.count;
  int r = a.count == 0 ? 0 : bpf_map_update_batch(fd, a.keys.data, a.values.data, &n, &opts);
  bool fellBack = false;
  if (r < 0) {
    int err = -r;
    if (n != 0 || !(err == kENOTSUPP || err == EOPNOTSUPP || err == EINVAL))
      ThrowSyscall(env, what, "bpf_map_update_batch", err);
    fellBack = true;
    for (uint32_t i = 0; i < a.count; i++)
      if (bpf_map_update_elem(fd, a.keys.data + static_cast<size_t>(i) * keySize_, a.values.data + i * a.valueSize,
                              a.flags) < 0)
        ThrowSyscall(env, what, "bpf_map_update_elem", errno);
  }
  Napi::Object result = Napi::Object::New(env);
  result.Set("count", a.count);
  result.Set("fallback", fellBack);
  return result;
}

// deleteBatch(keys, count?) → Promise<{count, fallback}>
Napi::Value Map::DeleteBatch(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = FdOrThrow(env);
  std::string what = "batch delete from map " + Quote(name_);
  Bytes keys = ArgBytes(env, info[0], what + ": keys");
  if (keySize_ == 0 || keys.len % keySize_ != 0)
    ThrowInvalid(env, what + ": keys are " + std::to_string(keys.len) + " bytes, not a multiple of the key size " +
                          std::to_string(keySize_));
  uint32_t count = BatchCount(env, info[1], what, keys.len / keySize_);
  int dup = DupFd(fd);
  if (dup < 0) ThrowSyscall(env, what, "fcntl", -dup);
  auto* worker = new BatchWorker(env, BatchWorker::Op::Delete, Fd(dup), name_, type_, keySize_, StoredValueSize(), maxEntries_);
  worker->SetInput(keys, Bytes{}, count, 0);
  Napi::Promise p = worker->Promise();
  worker->Queue();
  return p;
}

// lookupBatch() → Promise<{count, keys, values, fallback}> — the whole map.
Napi::Value Map::LookupBatch(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = FdOrThrow(env);
  int dup = DupFd(fd);
  if (dup < 0) ThrowSyscall(env, "batch look up in map " + Quote(name_), "fcntl", -dup);
  auto* worker = new BatchWorker(env, BatchWorker::Op::Lookup, Fd(dup), name_, type_, keySize_, StoredValueSize(), maxEntries_);
  Napi::Promise p = worker->Promise();
  worker->Queue();
  return p;
}

Napi::Value Map::Info(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = FdOrThrow(env);
  bpf_map_info mi;
  int r = QueryMapInfo(fd, &mi);
  if (r < 0) ThrowSyscall(env, "read info of map " + Quote(name_), "bpf_obj_get_info_by_fd", -r);
  Napi::Object o = Napi::Object::New(env);
  o.Set("id", mi.id);
  o.Set("name", mi.name);
  o.Set("type", mi.type);
  o.Set("keySize", mi.key_size);
  o.Set("valueSize", mi.value_size);
  o.Set("maxEntries", mi.max_entries);
  o.Set("flags", mi.map_flags);
  return o;
}

Napi::Value Map::Pin(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return PinFd(env, FdOrThrow(env), "pin map " + Quote(name_), info[0]);
}

Napi::Value Map::Close(const Napi::CallbackInfo& info) {
  fd_.Reset();
  return info.Env().Undefined();
}

// createMap({type, keySize, valueSize, maxEntries, flags?, name?, innerMap?}) → Map
Napi::Value CreateMap(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = ArgObject(env, info[0], "create map: options");
  std::string name;
  if (!o.Get("name").IsUndefined()) name = ArgObjName(env, o.Get("name"), "create map: name");
  std::string what = "create map" + (name.empty() ? std::string() : " " + Quote(name));
  uint32_t type = ArgU32(env, o.Get("type"), what + ": type");
  uint32_t keySize = OptU32(env, o, "keySize", 0, what + ": keySize");
  uint32_t valueSize = OptU32(env, o, "valueSize", 0, what + ": valueSize");
  uint32_t maxEntries = ArgU32(env, o.Get("maxEntries"), what + ": maxEntries");
  uint32_t flags = OptU32(env, o, "flags", 0, what + ": flags");
  if (type == BPF_MAP_TYPE_UNSPEC) ThrowInvalid(env, what + ": type must not be 0 (unspec)");
  LIBBPF_OPTS(bpf_map_create_opts, opts, .map_flags = flags);
  Napi::Value inner = o.Get("innerMap");
  if (HoldsMaps(type)) {
    Map* m = UnwrapAs<Map>(env, inner, Data(env)->mapCtor, what + ": a map-in-map needs innerMap, a Map");
    opts.inner_map_fd = static_cast<__u32>(m->FdOrThrow(env));
  } else if (!inner.IsUndefined()) {
    ThrowInvalid(env, what + ": innerMap is only for array-of-maps and hash-of-maps");
  }
  int fd = bpf_map_create(static_cast<bpf_map_type>(type), name.empty() ? nullptr : name.c_str(), keySize, valueSize,
                          maxEntries, &opts);
  if (fd < 0) ThrowSyscall(env, what, "bpf_map_create", -fd);
  return Map::Wrap(env, Fd(fd), name);
}

}  // namespace sluice
