// BPF programs: load from raw instructions (with verifier log), BPF_PROG_TEST_RUN, info.
#include "handles.h"

#include <cerrno>
#include <cstring>

namespace sluice {

namespace {
std::string ProgWhat(const char* op, const std::string& name) { return std::string(op) + " program " + Quote(name); }

std::string HexTag(const unsigned char* tag) {
  static const char* digits = "0123456789abcdef";
  std::string s;
  for (int i = 0; i < BPF_TAG_SIZE; i++) {
    s += digits[tag[i] >> 4];
    s += digits[tag[i] & 15];
  }
  return s;
}
}  // namespace

int QueryProgInfo(int fd, bpf_prog_info* out) {
  memset(out, 0, sizeof *out);
  __u32 len = sizeof *out;
  int r = bpf_obj_get_info_by_fd(fd, out, &len);
  return r < 0 ? -errno : 0;
}

Napi::Function Program::Define(Napi::Env env) {
  return DefineClass(env, "Program",
                     {
                         InstanceAccessor<&Program::GetFd>("fd"),
                         InstanceAccessor<&Program::GetName>("name"),
                         InstanceAccessor<&Program::GetType>("type"),
                         InstanceAccessor<&Program::GetId>("id"),
                         InstanceAccessor<&Program::GetTag>("tag"),
                         InstanceAccessor<&Program::GetClosed>("closed"),
                         InstanceMethod<&Program::TestRun>("testRun"),
                         InstanceMethod<&Program::TestRunEach>("testRunEach"),
                         InstanceMethod<&Program::TestRunBatch>("testRunBatch"),
                         InstanceMethod<&Program::Info>("info"),
                         InstanceMethod<&Program::Pin>("pin"),
                         InstanceMethod<&Program::Close>("close"),
                     });
}

struct ProgramInit {
  Fd fd;
  std::string name;
};

Napi::Object Program::Wrap(Napi::Env env, Fd fd, const std::string& name) {
  ProgramInit init{std::move(fd), name};
  return Data(env)->programCtor.New({Napi::External<ProgramInit>::New(env, &init)});
}

Program::Program(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Program>(info) {
  Napi::Env env = info.Env();
  if (info.Length() != 1 || !info[0].IsExternal())
    ThrowInvalid(env, "a Program cannot be constructed directly: use loadProgram(), an object's program() or openPinned()");
  ProgramInit* init = info[0].As<Napi::External<ProgramInit>>().Data();
  bpf_prog_info pi;
  int r = QueryProgInfo(init->fd.Get(), &pi);
  if (r < 0) ThrowSyscall(env, "read program info", "bpf_obj_get_info_by_fd", -r);
  fd_ = std::move(init->fd);
  name_ = init->name.empty() ? std::string(pi.name) : init->name;
  type_ = pi.type;
  id_ = pi.id;
  tag_ = HexTag(pi.tag);
}

int Program::FdOrThrow(Napi::Env env) const {
  if (!fd_.Valid()) ThrowClosed(env, "program " + Quote(name_) + " is closed");
  return fd_.Get();
}

Napi::Value Program::GetFd(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), fd_.Get()); }
Napi::Value Program::GetName(const Napi::CallbackInfo& info) { return Napi::String::New(info.Env(), name_); }
Napi::Value Program::GetType(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), type_); }
Napi::Value Program::GetId(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), id_); }
Napi::Value Program::GetTag(const Napi::CallbackInfo& info) { return Napi::String::New(info.Env(), tag_); }
Napi::Value Program::GetClosed(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), !fd_.Valid()); }

Napi::Value Program::Info(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = FdOrThrow(env);
  std::string what = ProgWhat("read info of", name_);
  bpf_prog_info pi;
  int r = QueryProgInfo(fd, &pi);
  if (r < 0) ThrowSyscall(env, what, "bpf_obj_get_info_by_fd", -r);
  std::vector<__u32> mapIds(pi.nr_map_ids);
  if (pi.nr_map_ids > 0) {
    bpf_prog_info again;
    memset(&again, 0, sizeof again);
    again.nr_map_ids = pi.nr_map_ids;
    again.map_ids = reinterpret_cast<__u64>(mapIds.data());
    __u32 len = sizeof again;
    if (bpf_obj_get_info_by_fd(fd, &again, &len) < 0) ThrowSyscall(env, what, "bpf_obj_get_info_by_fd", errno);
    mapIds.resize(std::min<__u32>(again.nr_map_ids, pi.nr_map_ids));
  }
  Napi::Object o = Napi::Object::New(env);
  o.Set("id", pi.id);
  o.Set("name", pi.name);
  o.Set("type", pi.type);
  o.Set("tag", HexTag(pi.tag));
  o.Set("runCnt", static_cast<double>(pi.run_cnt));
  o.Set("runTimeNs", static_cast<double>(pi.run_time_ns));
  o.Set("xlatedLen", pi.xlated_prog_len);
  o.Set("jitedLen", pi.jited_prog_len);
  o.Set("btfId", pi.btf_id);
  o.Set("loadTime", static_cast<double>(pi.load_time));
  Napi::Array ids = Napi::Array::New(env, mapIds.size());
  for (size_t i = 0; i < mapIds.size(); i++) ids.Set(static_cast<uint32_t>(i), mapIds[i]);
  o.Set("mapIds", ids);
  return o;
}

Napi::Value Program::Pin(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return PinFd(env, FdOrThrow(env), ProgWhat("pin", name_), info[0]);
}

Napi::Value Program::Close(const Napi::CallbackInfo& info) {
  fd_.Reset();
  return info.Env().Undefined();
}

// ---- test run -------------------------------------------------------------------------------

namespace {
class TestRunWorker : public Napi::AsyncWorker {
 public:
  TestRunWorker(Napi::Env env, Fd fd, std::string name)
      : Napi::AsyncWorker(env, "sluice:testRun"), deferred_(Napi::Promise::Deferred::New(env)), fd_(std::move(fd)),
        name_(std::move(name)) {}
  Napi::Promise Promise() { return deferred_.Promise(); }

  std::vector<uint8_t> data, ctx, out;
  bool wantOut = false;
  uint32_t repeat = 1;

 protected:
  void Execute() override {
    LIBBPF_OPTS(bpf_test_run_opts, opts);
    opts.data_in = data.empty() ? nullptr : data.data();
    opts.data_size_in = static_cast<__u32>(data.size());
    if (wantOut) {
      opts.data_out = out.data();
      opts.data_size_out = static_cast<__u32>(out.size());
    }
    if (!ctx.empty()) {
      opts.ctx_in = ctx.data();
      opts.ctx_size_in = static_cast<__u32>(ctx.size());
    }
    opts.repeat = static_cast<int>(repeat);
    int r = bpf_prog_test_run_opts(fd_.Get(), &opts);
    if (r < 0) {
      err_ = -r;
      return;
    }
    retval_ = opts.retval;
    duration_ = opts.duration;
    outLen_ = wantOut ? opts.data_size_out : 0;
  }

  void OnOK() override {
    Napi::Env env = Env();
    if (err_ != 0) {
      std::string reason;
      if (err_ == EINVAL && data.size() < 14) reason = "invalid argument (packets need at least 14 bytes, an Ethernet header)";
      if (err_ == ENOSPC) reason = "the packet grew beyond dataOut (give a larger dataOut)";
      deferred_.Reject(
          MakeSyscallError(env, "test run program " + Quote(name_), "bpf_prog_test_run_opts", err_, nullptr, reason));
      return;
    }
    Napi::Object o = Napi::Object::New(env);
    o.Set("retval", retval_);
    o.Set("durationNs", duration_);
    if (wantOut) o.Set("dataOut", Napi::Buffer<uint8_t>::Copy(env, out.data(), std::min<size_t>(outLen_, out.size())));
    deferred_.Resolve(o);
  }

  void OnError(const Napi::Error& e) override { deferred_.Reject(e.Value()); }

 private:
  Napi::Promise::Deferred deferred_;
  Fd fd_;
  std::string name_;
  int err_ = 0;
  uint32_t retval_ = 0, duration_ = 0, outLen_ = 0;
};
}  // namespace

namespace {
// Runs the program once over each of many packets in one worker: a differential test judges
// millions of packets, and a thread-pool round trip per packet would dominate the run time.
class TestRunEachWorker : public Napi::AsyncWorker {
 public:
  TestRunEachWorker(Napi::Env env, Fd fd)
      : Napi::AsyncWorker(env, "sluice:testRunEach"), deferred_(Napi::Promise::Deferred::New(env)), fd_(std::move(fd)) {}
  Napi::Promise Promise() { return deferred_.Promise(); }

  std::vector<uint8_t> bytes;     // the packets' bytes
  std::vector<uint32_t> starts;   // packet i is bytes[starts[i], starts[i] + lengths[i])
  std::vector<uint32_t> lengths;

 protected:
  void Execute() override {
    size_t n = starts.size();
    retvals_.assign(n, 0);
    errnos_.assign(n, 0);
    for (size_t i = 0; i < n; i++) {
      LIBBPF_OPTS(bpf_test_run_opts, opts);
      opts.data_in = bytes.data() + starts[i];
      opts.data_size_in = lengths[i];
      opts.repeat = 1;
      int r = bpf_prog_test_run_opts(fd_.Get(), &opts);
      if (r < 0)
        errnos_[i] = -r;
      else
        retvals_[i] = opts.retval;
    }
  }

  void OnOK() override {
    Napi::Env env = Env();
    size_t n = retvals_.size();
    Napi::Uint32Array retvals = Napi::Uint32Array::New(env, n);
    Napi::Int32Array errnos = Napi::Int32Array::New(env, n);
    std::memcpy(retvals.Data(), retvals_.data(), n * sizeof(uint32_t));
    std::memcpy(errnos.Data(), errnos_.data(), n * sizeof(int32_t));
    Napi::Object o = Napi::Object::New(env);
    o.Set("retvals", retvals);
    o.Set("errnos", errnos);
    deferred_.Resolve(o);
  }

  void OnError(const Napi::Error& e) override { deferred_.Reject(e.Value()); }

 private:
  Napi::Promise::Deferred deferred_;
  Fd fd_;
  std::vector<uint32_t> retvals_;
  std::vector<int32_t> errnos_;
};
}  // namespace

// testRunEach(packets: Uint8Array[]) → Promise<{retvals: Uint32Array, errnos: Int32Array}>; a packet the
// kernel refuses (e.g. shorter than 14 bytes) gets its errno instead of failing the whole run.
Napi::Value Program::TestRunEach(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = FdOrThrow(env);
  std::string what = ProgWhat("test run", name_);
  if (info.Length() < 1 || !info[0].IsArray()) ThrowInvalid(env, what + ": packets must be an array of Uint8Array");
  Napi::Array packets = info[0].As<Napi::Array>();
  uint32_t n = packets.Length();
  int dup = DupFd(fd);
  if (dup < 0) ThrowSyscall(env, what, "fcntl", -dup);
  auto* worker = new TestRunEachWorker(env, Fd(dup));
  try {
    worker->starts.reserve(n);
    worker->lengths.reserve(n);
    for (uint32_t i = 0; i < n; i++) {
      Bytes b = ArgBytes(env, packets.Get(i), what + ": packets[" + std::to_string(i) + "]");
      if (worker->bytes.size() + b.len > 0xffffffffu) ThrowInvalid(env, what + ": packets exceed 4 GiB in all");
      worker->starts.push_back(static_cast<uint32_t>(worker->bytes.size()));
      worker->lengths.push_back(static_cast<uint32_t>(b.len));
      worker->bytes.insert(worker->bytes.end(), b.data, b.data + b.len);
    }
  } catch (...) {
    delete worker;
    throw;
  }
  Napi::Promise p = worker->Promise();
  worker->Queue();
  return p;
}

// testRunBatch(data: Uint8Array, starts: Uint32Array, lengths: Uint32Array) → the same as testRunEach,
// packet i being data[starts[i], starts[i] + lengths[i]). One copy of `data` and no object per packet:
// a pcap held in memory replays without slicing it into a hundred thousand Uint8Arrays first.
Napi::Value Program::TestRunBatch(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = FdOrThrow(env);
  std::string what = ProgWhat("test run", name_);
  Bytes data = ArgBytes(env, info[0], what + ": data");
  auto u32s = [&](size_t at, const char* name) -> Napi::Uint32Array {
    if (info.Length() <= at || !info[at].IsTypedArray() ||
        info[at].As<Napi::TypedArray>().TypedArrayType() != napi_uint32_array)
      ThrowInvalid(env, what + ": " + name + " must be a Uint32Array");
    return info[at].As<Napi::Uint32Array>();
  };
  Napi::Uint32Array starts = u32s(1, "starts");
  Napi::Uint32Array lengths = u32s(2, "lengths");
  size_t n = starts.ElementLength();
  if (lengths.ElementLength() != n)
    ThrowInvalid(env, what + ": starts and lengths must have the same length, got " + std::to_string(n) +
                          " and " + std::to_string(lengths.ElementLength()));
  if (data.len > 0xffffffffu) ThrowInvalid(env, what + ": data exceeds 4 GiB");
  for (size_t i = 0; i < n; i++) {
    if (static_cast<uint64_t>(starts[i]) + lengths[i] > data.len)
      ThrowInvalid(env, what + ": packet " + std::to_string(i) + " (bytes " + std::to_string(starts[i]) + " + " +
                            std::to_string(lengths[i]) + ") ends past the data's " + std::to_string(data.len) +
                            " bytes");
  }
  int dup = DupFd(fd);
  if (dup < 0) ThrowSyscall(env, what, "fcntl", -dup);
  auto* worker = new TestRunEachWorker(env, Fd(dup));
  worker->bytes.assign(data.data, data.data + data.len);
  worker->starts.assign(starts.Data(), starts.Data() + n);
  worker->lengths.assign(lengths.Data(), lengths.Data() + n);
  Napi::Promise p = worker->Promise();
  worker->Queue();
  return p;
}

// testRun({data, ctx?, repeat?, dataOut?: boolean | number}) → Promise<{retval, durationNs, dataOut?}>
Napi::Value Program::TestRun(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = FdOrThrow(env);
  std::string what = ProgWhat("test run", name_);
  Napi::Object o = ArgObject(env, info[0], what + ": options");
  Bytes data{};
  if (!o.Get("data").IsUndefined()) data = ArgBytes(env, o.Get("data"), what + ": data");
  uint32_t repeat = OptU32(env, o, "repeat", 1, what + ": repeat");
  if (repeat == 0 || repeat > 100000000) ThrowInvalid(env, what + ": repeat must be from 1 to 100000000");
  int dup = DupFd(fd);
  if (dup < 0) ThrowSyscall(env, what, "fcntl", -dup);
  auto* worker = new TestRunWorker(env, Fd(dup), name_);
  try {
    worker->data.assign(data.data, data.data + data.len);
    Napi::Value ctx = o.Get("ctx");
    if (!ctx.IsUndefined()) {
      Bytes c = ArgBytes(env, ctx, what + ": ctx");
      worker->ctx.assign(c.data, c.data + c.len);
    }
    worker->repeat = repeat;
    Napi::Value wantOut = o.Get("dataOut");
    if (wantOut.IsBoolean()) {
      worker->wantOut = wantOut.As<Napi::Boolean>().Value();
      if (worker->wantOut) worker->out.resize(data.len + 4096);
    } else if (!wantOut.IsUndefined()) {
      uint32_t size = ArgU32(env, wantOut, what + ": dataOut");
      if (size == 0 || size > (64u << 20)) ThrowInvalid(env, what + ": dataOut must be from 1 to 67108864 bytes");
      worker->wantOut = true;
      worker->out.resize(size);
    }
  } catch (...) {
    delete worker;
    throw;
  }
  Napi::Promise p = worker->Promise();
  worker->Queue();
  return p;
}

// ---- load -----------------------------------------------------------------------------------

// loadProgram({type, insns, name?, license?, expectedAttachType?, relocations?: [{insnIndex, map | mapFd}]})
Napi::Value LoadProgram(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = ArgObject(env, info[0], "load program: options");
  std::string name;
  if (!o.Get("name").IsUndefined()) name = ArgObjName(env, o.Get("name"), "load program: name");
  std::string what = "load program" + (name.empty() ? std::string() : " " + Quote(name));
  uint32_t type = ArgU32(env, o.Get("type"), what + ": type");
  if (type != BPF_PROG_TYPE_SOCKET_FILTER && type != BPF_PROG_TYPE_SCHED_CLS && type != BPF_PROG_TYPE_XDP)
    ThrowInvalid(env, what + ": type must be socket_filter (1), sched_cls (3) or xdp (6), got " + std::to_string(type));
  Bytes raw = ArgBytes(env, o.Get("insns"), what + ": insns");
  if (raw.len == 0 || raw.len % sizeof(bpf_insn) != 0)
    ThrowInvalid(env, what + ": instructions are " + std::to_string(raw.len) +
                          " bytes, expected a non-zero multiple of 8");
  size_t count = raw.len / sizeof(bpf_insn);
  if (count > 1000000) ThrowInvalid(env, what + ": " + std::to_string(count) + " instructions, the kernel allows 1000000");
  std::string license = "GPL";
  if (!o.Get("license").IsUndefined()) license = ArgString(env, o.Get("license"), what + ": license");
  uint32_t attachType = OptU32(env, o, "expectedAttachType", 0, what + ": expectedAttachType");

  std::vector<bpf_insn> insns(count);
  memcpy(insns.data(), raw.data, raw.len);

  Napi::Value relocs = o.Get("relocations");
  if (!relocs.IsUndefined()) {
    if (!relocs.IsArray()) ThrowInvalid(env, what + ": relocations must be an array");
    Napi::Array arr = relocs.As<Napi::Array>();
    for (uint32_t i = 0; i < arr.Length(); i++) {
      std::string rwhat = what + ": relocation " + std::to_string(i);
      Napi::Object r = ArgObject(env, arr.Get(i), rwhat);
      uint32_t index = ArgU32(env, r.Get("insnIndex"), rwhat + ": insnIndex");
      if (index + 1 >= count)
        ThrowInvalid(env, rwhat + ": insnIndex " + std::to_string(index) + " is past the last 16-byte instruction");
      if (insns[index].code != (BPF_LD | BPF_IMM | BPF_DW))
        ThrowInvalid(env, rwhat + ": instruction " + std::to_string(index) + " is not a 64-bit load (BPF_LD_IMM64)");
      int mapFd;
      if (!r.Get("map").IsUndefined())
        mapFd = UnwrapAs<Map>(env, r.Get("map"), Data(env)->mapCtor, rwhat + ": map must be a Map")->FdOrThrow(env);
      else
        mapFd = ArgFdNumber(env, r.Get("mapFd"), rwhat + ": mapFd");
      insns[index].src_reg = BPF_PSEUDO_MAP_FD;
      insns[index].imm = mapFd;
      insns[index + 1].imm = 0;
    }
  }

  LIBBPF_OPTS(bpf_prog_load_opts, opts, .expected_attach_type = static_cast<bpf_attach_type>(attachType));
  ProfilerSignalGuard quiet;
  // Fast path without a log; on failure load again with a log big enough to hold all of it.
  int fd = bpf_prog_load(static_cast<bpf_prog_type>(type), name.empty() ? nullptr : name.c_str(), license.c_str(),
                         insns.data(), count, &opts);
  if (fd >= 0) return Program::Wrap(env, Fd(fd), name);
  int err = -fd;
  if (err == EPERM) ThrowSyscall(env, what, "bpf_prog_load", err);
  std::vector<std::string> log;
  for (size_t size = 1u << 20;; size *= 4) {
    std::vector<char> buf(size, '\0');
    opts.log_buf = buf.data();
    opts.log_size = static_cast<__u32>(size);
    opts.log_level = 1;
    fd = bpf_prog_load(static_cast<bpf_prog_type>(type), name.empty() ? nullptr : name.c_str(), license.c_str(),
                       insns.data(), count, &opts);
    if (fd >= 0) return Program::Wrap(env, Fd(fd), name);  // a flaky first failure (e.g. EAGAIN)
    err = -fd;
    log = SplitLines(buf.data(), buf.size());
    if (err == ENOSPC && size < (256u << 20)) continue;
    break;
  }
  if (!log.empty()) ThrowValue(env, MakeVerifierError(env, what, err, log));
  ThrowSyscall(env, what, "bpf_prog_load", err);
}

}  // namespace sluice
