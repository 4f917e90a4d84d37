// The wrapped kernel objects: Map, Program, Link, Object (libbpf bpf_object) and Stats.
#pragma once

#include "common.h"

#include <memory>

namespace sluice {

// Every wrapper is built only by the addon: the constructor takes an External<Init> token.

class Map : public Napi::ObjectWrap<Map> {
 public:
  struct Init {
    Fd fd;
    std::string name;  // empty: take the kernel's name
  };
  static Napi::Function Define(Napi::Env env);
  // Takes ownership of fd; queries the kernel for the map's shape.
  static Napi::Object Wrap(Napi::Env env, Fd fd, const std::string& name = "");
  explicit Map(const Napi::CallbackInfo& info);
  ~Map() override;

  int FdOrThrow(Napi::Env env) const;
  uint32_t Type() const { return type_; }
  const std::string& Name() const { return name_; }

 private:
  Napi::Value GetFd(const Napi::CallbackInfo& info);
  Napi::Value GetName(const Napi::CallbackInfo& info);
  Napi::Value GetType(const Napi::CallbackInfo& info);
  Napi::Value GetKeySize(const Napi::CallbackInfo& info);
  Napi::Value GetValueSize(const Napi::CallbackInfo& info);
  Napi::Value GetMaxEntries(const Napi::CallbackInfo& info);
  Napi::Value GetFlags(const Napi::CallbackInfo& info);
  Napi::Value GetId(const Napi::CallbackInfo& info);
  Napi::Value GetClosed(const Napi::CallbackInfo& info);
  Napi::Value GetPerCpu(const Napi::CallbackInfo& info);

  Napi::Value Lookup(const Napi::CallbackInfo& info);
  Napi::Value LookupInto(const Napi::CallbackInfo& info);
  // The per-instance update function's link back to its Map; the Map clears it when destroyed,
  // so a function that outlives its Map reports a closed map instead of touching freed memory.
  struct UpdateTarget {
    Map* map;
  };
  static napi_value UpdateBound(napi_env env, napi_callback_info cbinfo);
  void InstallUpdate(Napi::Env env, Napi::Object self);
  bool UpdatePlain(napi_env env, napi_value key, napi_value value, napi_value flags);
  Napi::Value Update(const Napi::CallbackInfo& info);
  Napi::Value UpdateFd(const Napi::CallbackInfo& info);
  Napi::Value Delete(const Napi::CallbackInfo& info);
  Napi::Value NextKey(const Napi::CallbackInfo& info);
  Napi::Value UpdateBatch(const Napi::CallbackInfo& info);
  Napi::Value UpdateBatchSync(const Napi::CallbackInfo& info);
  struct UpdateBatchArgs {
    Bytes keys, values;
    size_t valueSize = 0;
    uint32_t count = 0, flags = 0;
  };
  UpdateBatchArgs UpdateArgs(Napi::Env env, const Napi::CallbackInfo& info, const std::string& what);
  Napi::Value LookupBatch(const Napi::CallbackInfo& info);
  Napi::Value DeleteBatch(const Napi::CallbackInfo& info);
  Napi::Value Info(const Napi::CallbackInfo& info);
  Napi::Value Pin(const Napi::CallbackInfo& info);
  Napi::Value Close(const Napi::CallbackInfo& info);

  void CheckKey(Napi::Env env, const char* op, const Bytes& key) const;
  uint32_t CheckFlags(Napi::Env env, const char* op, const Napi::Value& v) const;
  // bpf_map_update_elem on this map; throws SyscallError with the map's reason on failure.
  void UpdateElem(Napi::Env env, const void* key, const void* value, uint32_t flags) const;
  size_t StoredValueSize() const;

  Fd fd_;
  std::string name_;
  uint32_t type_ = 0, keySize_ = 0, valueSize_ = 0, maxEntries_ = 0, flags_ = 0, id_ = 0;
  bool perCpu_ = false;
  std::vector<uint8_t> scratch_;  // per-CPU value staging, reused across calls
  std::shared_ptr<UpdateTarget> updateTarget_;
};

class Program : public Napi::ObjectWrap<Program> {
 public:
  static Napi::Function Define(Napi::Env env);
  static Napi::Object Wrap(Napi::Env env, Fd fd, const std::string& name = "");
  explicit Program(const Napi::CallbackInfo& info);

  int FdOrThrow(Napi::Env env) const;
  uint32_t Type() const { return type_; }
  const std::string& Name() const { return name_; }

 private:
  Napi::Value GetFd(const Napi::CallbackInfo& info);
  Napi::Value GetName(const Napi::CallbackInfo& info);
  Napi::Value GetType(const Napi::CallbackInfo& info);
  Napi::Value GetId(const Napi::CallbackInfo& info);
  Napi::Value GetTag(const Napi::CallbackInfo& info);
  Napi::Value GetClosed(const Napi::CallbackInfo& info);
  Napi::Value TestRun(const Napi::CallbackInfo& info);
  Napi::Value TestRunEach(const Napi::CallbackInfo& info);
  Napi::Value TestRunBatch(const Napi::CallbackInfo& info);
  Napi::Value Info(const Napi::CallbackInfo& info);
  Napi::Value Pin(const Napi::CallbackInfo& info);
  Napi::Value Close(const Napi::CallbackInfo& info);

  Fd fd_;
  std::string name_;
  uint32_t type_ = 0, id_ = 0;
  std::string tag_;
};

class Link : public Napi::ObjectWrap<Link> {
 public:
  // A clsact qdisc this process created, shared by every legacy tc attachment on it (link.cc).
  struct Clsact;
  // kind: "xdp", "tcx" (bpf_link) or "tc" (clsact + cls_bpf, no link fd).
  struct TcLegacy {
    int ifindex = 0;
    uint32_t attachPoint = 0;  // BPF_TC_INGRESS / BPF_TC_EGRESS
    uint32_t handle = 0, priority = 0, progId = 0;
    Fd netns;  // the namespace the filter lives in, for detach
    // Set when the device's clsact is ours: the detach that leaves it without filters removes it.
    std::shared_ptr<Clsact> clsact;
  };
  static Napi::Function Define(Napi::Env env);
  static Napi::Object Wrap(Napi::Env env, Fd fd, const std::string& name = "");
  static Napi::Object WrapTc(Napi::Env env, std::unique_ptr<TcLegacy> tc, const std::string& name);
  explicit Link(const Napi::CallbackInfo& info);

 private:
  Napi::Value GetFd(const Napi::CallbackInfo& info);
  Napi::Value GetKind(const Napi::CallbackInfo& info);
  Napi::Value GetName(const Napi::CallbackInfo& info);
  Napi::Value GetId(const Napi::CallbackInfo& info);
  Napi::Value GetClosed(const Napi::CallbackInfo& info);
  Napi::Value Update(const Napi::CallbackInfo& info);
  Napi::Value Detach(const Napi::CallbackInfo& info);
  Napi::Value Info(const Napi::CallbackInfo& info);
  Napi::Value Pin(const Napi::CallbackInfo& info);
  Napi::Value Close(const Napi::CallbackInfo& info);

  void CheckOpen(Napi::Env env) const;
  void DetachTc(Napi::Env env, const char* verb);

  Fd fd_;
  std::unique_ptr<TcLegacy> tc_;
  bool closed_ = false;
  std::string name_, kind_;
  uint32_t id_ = 0, linkType_ = 0;
};

class BpfObject : public Napi::ObjectWrap<BpfObject> {
 public:
  static Napi::Function Define(Napi::Env env);
  explicit BpfObject(const Napi::CallbackInfo& info);
  ~BpfObject() override;

 private:
  Napi::Value GetName(const Napi::CallbackInfo& info);
  Napi::Value GetLoaded(const Napi::CallbackInfo& info);
  Napi::Value GetClosed(const Napi::CallbackInfo& info);
  Napi::Value Programs(const Napi::CallbackInfo& info);
  Napi::Value Maps(const Napi::CallbackInfo& info);
  Napi::Value SetMaxEntries(const Napi::CallbackInfo& info);
  Napi::Value SetPinPath(const Napi::CallbackInfo& info);
  Napi::Value SetAutoload(const Napi::CallbackInfo& info);
  Napi::Value Load(const Napi::CallbackInfo& info);
  Napi::Value GetMap(const Napi::CallbackInfo& info);
  Napi::Value GetProgram(const Napi::CallbackInfo& info);
  Napi::Value Close(const Napi::CallbackInfo& info);

  bpf_object* Obj(Napi::Env env) const;
  bpf_map* FindMap(Napi::Env env, const Napi::Value& v, const char* op) const;
  bpf_program* FindProgram(Napi::Env env, const Napi::Value& v, const char* op) const;

  struct Closer {
    void operator()(bpf_object* o) const { bpf_object__close(o); }
  };
  std::unique_ptr<bpf_object, Closer> obj_;
  std::vector<uint8_t> image_;  // libbpf reads an in-memory ELF until load
  std::string name_;
  bool loaded_ = false;
};

// An fd from bpf_enable_stats(): statistics stay on while it is open.
class Stats : public Napi::ObjectWrap<Stats> {
 public:
  static Napi::Function Define(Napi::Env env);
  explicit Stats(const Napi::CallbackInfo& info);

 private:
  Napi::Value GetClosed(const Napi::CallbackInfo& info);
  Napi::Value Close(const Napi::CallbackInfo& info);
  Fd fd_;
};

// Free functions registered on the module.
Napi::Value CreateMap(const Napi::CallbackInfo& info);
Napi::Value LoadProgram(const Napi::CallbackInfo& info);
Napi::Value OpenObject(const Napi::CallbackInfo& info);
Napi::Value AttachXdp(const Napi::CallbackInfo& info);
Napi::Value AttachTc(const Napi::CallbackInfo& info);
Napi::Value OpenPinned(const Napi::CallbackInfo& info);
Napi::Value Unpin(const Napi::CallbackInfo& info);
Napi::Value GetById(const Napi::CallbackInfo& info);
Napi::Value EnableStats(const Napi::CallbackInfo& info);
Napi::Value MountBpffs(const Napi::CallbackInfo& info);
Napi::Value IsBpffs(const Napi::CallbackInfo& info);
Napi::Value RunInNetns(const Napi::CallbackInfo& info);
Napi::Value IfNameToIndex(const Napi::CallbackInfo& info);
Napi::Value IfIndexToName(const Napi::CallbackInfo& info);
Napi::Value PinFd(Napi::Env env, int fd, const std::string& what, const Napi::Value& path);

// Map info from the kernel; returns -errno on failure.
int QueryMapInfo(int fd, bpf_map_info* out);
int QueryProgInfo(int fd, bpf_prog_info* out);
int QueryLinkInfo(int fd, bpf_link_info* out);

}  // namespace sluice
