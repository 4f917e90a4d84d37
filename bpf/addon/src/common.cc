// Shared pieces of the sluice libbpf binding: typed JS errors, argument checks, libbpf log capture.
#include "common.h"

#include <cerrno>
#include <cmath>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <mutex>

#include <sched.h>

namespace sluice {

int DupFd(int fd) {
  int dup = fcntl(fd, F_DUPFD_CLOEXEC, 3);
  return dup < 0 ? -errno : dup;
}

int NetnsGuard::Enter(int target) {
  original_.Reset(open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC));
  if (!original_.Valid()) {
    failedCall_ = "open";
    return -errno;
  }
  if (setns(target, CLONE_NEWNET) < 0) {
    failedCall_ = "setns";
    return -errno;
  }
  entered_ = true;
  return 0;
}

NetnsGuard::~NetnsGuard() {
  if (!entered_ || setns(original_.Get(), CLONE_NEWNET) == 0) return;
  int err = errno;
  fprintf(stderr,
          "sluice: %s: cannot return to the original network namespace (setns: %s); aborting, because "
          "this thread and every socket it opens from now on would be in the wrong namespace\n",
          what_.c_str(), strerror(err));
  abort();
}

AddonData* Data(Napi::Env env) { return env.GetInstanceData<AddonData>(); }

std::string Quote(const std::string& s) { return "\"" + s + "\""; }

std::string ProgTypeName(uint32_t type) {
  const char* name = libbpf_bpf_prog_type_str(static_cast<bpf_prog_type>(type));
  return name != nullptr ? name : "type " + std::to_string(type);
}

std::string ErrnoText(int err) {
  switch (err) {
    case 524:
      return "operation not supported by the kernel (ENOTSUPP)";
    case EBUSY:
      return "device busy";
    default:
      break;
  }
  char buf[256];
  const char* text;
  if (err >= 4000 && err < 4100 && libbpf_strerror(err, buf, sizeof buf) == 0) text = buf;  // LIBBPF_ERRNO__*
  else text = strerror_r(err, buf, sizeof buf);
  std::string s = text ? text : "unknown error";
  if (!s.empty() && s[0] >= 'A' && s[0] <= 'Z' && !(s.size() > 1 && s[1] >= 'A' && s[1] <= 'Z'))
    s[0] = static_cast<char>(s[0] - 'A' + 'a');
  return s;
}

Napi::Value MakeSimpleError(Napi::Env env, Napi::FunctionReference& ctor, const char* fallbackCode,
                            const std::string& message) {
  if (!ctor.IsEmpty()) return ctor.New({Napi::String::New(env, message)});
  Napi::Error e = Napi::Error::New(env, message);
  e.Value().Set("code", fallbackCode);
  return e.Value();
}

Napi::Value MakeSyscallError(Napi::Env env, const std::string& what, const char* syscall, int err,
                             const std::vector<std::string>* log, const std::string& reason) {
  std::string message = what + ": " + (reason.empty() ? ErrnoText(err) : reason);
  Napi::Object opts = Napi::Object::New(env);
  opts.Set("errno", err);
  opts.Set("syscall", syscall);
  if (log && !log->empty()) opts.Set("libbpfLog", ToJsArray(env, *log));
  AddonData* data = Data(env);
  if (data && !data->syscallError.IsEmpty())
    return data->syscallError.New({Napi::String::New(env, message), opts});
  Napi::Error e = Napi::Error::New(env, message);
  e.Value().Set("errno", err);
  e.Value().Set("syscall", syscall);
  return e.Value();
}

Napi::Value MakeVerifierError(Napi::Env env, const std::string& what, int err,
                              const std::vector<std::string>& log) {
  std::string message = what + ": rejected by the verifier: " + TellingLine(log);
  Napi::Object opts = Napi::Object::New(env);
  opts.Set("errno", err);
  opts.Set("log", ToJsArray(env, log));
  AddonData* data = Data(env);
  if (data && !data->verifierError.IsEmpty())
    return data->verifierError.New({Napi::String::New(env, message), opts});
  Napi::Error e = Napi::Error::New(env, message);
  e.Value().Set("code", "BPF_VERIFIER");
  e.Value().Set("log", ToJsArray(env, log));
  return e.Value();
}

void ThrowValue(Napi::Env env, Napi::Value error) { throw Napi::Error(env, error); }

void ThrowSyscall(Napi::Env env, const std::string& what, const char* syscall, int err,
                  const std::vector<std::string>* log) {
  ThrowValue(env, MakeSyscallError(env, what, syscall, err, log));
}

void ThrowSyscallReason(Napi::Env env, const std::string& what, const std::string& reason, const char* syscall,
                        int err) {
  ThrowValue(env, MakeSyscallError(env, what, syscall, err, nullptr, reason));
}

void ThrowInvalid(Napi::Env env, const std::string& message) {
  ThrowValue(env, MakeSimpleError(env, Data(env)->invalidArgumentError, "BPF_INVALID_ARGUMENT", message));
}

void ThrowState(Napi::Env env, const std::string& message) {
  ThrowValue(env, MakeSimpleError(env, Data(env)->invalidStateError, "BPF_INVALID_STATE", message));
}

void ThrowClosed(Napi::Env env, const std::string& message) {
  ThrowValue(env, MakeSimpleError(env, Data(env)->closedError, "BPF_CLOSED", message));
}

void ThrowNotSupported(Napi::Env env, const std::string& message, const std::string& feature,
                       const std::string& minKernel) {
  AddonData* data = Data(env);
  if (!data->notSupportedError.IsEmpty()) {
    Napi::Object opts = Napi::Object::New(env);
    opts.Set("feature", feature);
    opts.Set("minKernel", minKernel);
    ThrowValue(env, data->notSupportedError.New({Napi::String::New(env, message), opts}));
  }
  Napi::Error e = Napi::Error::New(env, message);
  e.Value().Set("code", "BPF_NOT_SUPPORTED");
  throw e;
}

// ---- arguments ----------------------------------------------------------------------------

bool IsBytes(const Napi::Value& v) {
  return v.IsTypedArray() && v.As<Napi::TypedArray>().TypedArrayType() == napi_uint8_array;
}

Bytes ArgBytes(Napi::Env env, const Napi::Value& v, const std::string& what) {
  if (!IsBytes(v)) ThrowInvalid(env, what + " must be a Buffer or Uint8Array");
  Napi::Uint8Array a = v.As<Napi::Uint8Array>();
  Bytes b;
  b.data = a.Data();
  b.len = a.ByteLength();
  return b;
}

uint32_t ArgU32(Napi::Env env, const Napi::Value& v, const std::string& what) {
  if (!v.IsNumber()) ThrowInvalid(env, what + " must be an integer from 0 to 4294967295");
  double d = v.As<Napi::Number>().DoubleValue();
  if (!std::isfinite(d) || d < 0 || d > 4294967295.0 || std::floor(d) != d)
    ThrowInvalid(env, what + " must be an integer from 0 to 4294967295");
  return static_cast<uint32_t>(d);
}

uint32_t OptU32(Napi::Env env, const Napi::Object& o, const char* key, uint32_t def, const std::string& what) {
  Napi::Value v = o.Get(key);
  if (v.IsUndefined() || v.IsNull()) return def;
  return ArgU32(env, v, what);
}

int32_t ArgFdNumber(Napi::Env env, const Napi::Value& v, const std::string& what) {
  if (!v.IsNumber()) ThrowInvalid(env, what + " must be a file descriptor (an integer ≥ 0)");
  double d = v.As<Napi::Number>().DoubleValue();
  if (!std::isfinite(d) || d < 0 || d > 2147483647.0 || std::floor(d) != d)
    ThrowInvalid(env, what + " must be a file descriptor (an integer ≥ 0)");
  return static_cast<int32_t>(d);
}

std::string ArgString(Napi::Env env, const Napi::Value& v, const std::string& what) {
  if (!v.IsString()) ThrowInvalid(env, what + " must be a string");
  std::string s = v.As<Napi::String>().Utf8Value();
  if (s.find('\0') != std::string::npos) ThrowInvalid(env, what + " must not contain NUL characters");
  return s;
}

Napi::Object ArgObject(Napi::Env env, const Napi::Value& v, const std::string& what) {
  if (!v.IsObject() || v.IsArray() || v.IsFunction()) ThrowInvalid(env, what + " must be an object");
  return v.As<Napi::Object>();
}

bool ArgBool(Napi::Env env, const Napi::Value& v, const std::string& what) {
  if (!v.IsBoolean()) ThrowInvalid(env, what + " must be a boolean");
  return v.As<Napi::Boolean>().Value();
}

std::string ArgObjName(Napi::Env env, const Napi::Value& v, const std::string& what) {
  std::string s = ArgString(env, v, what);
  if (s.size() > 15) ThrowInvalid(env, what + " " + Quote(s) + " is longer than 15 characters, the most the kernel keeps");
  for (char c : s) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '.';
    if (!ok) ThrowInvalid(env, what + " " + Quote(s) + " may only contain letters, digits, \"_\" and \".\"");
  }
  return s;
}

// ---- libbpf log ---------------------------------------------------------------------------

namespace {
std::mutex g_logMutex;
std::deque<std::pair<uint64_t, std::string>> g_log;
uint64_t g_logSeq = 0;
std::string g_partial;
constexpr size_t kLogKeep = 4000;

void PushLine(std::string line) {
  g_log.emplace_back(++g_logSeq, std::move(line));
  while (g_log.size() > kLogKeep) g_log.pop_front();
}

int PrintToBuffer(enum libbpf_print_level level, const char* fmt, va_list args) {
  if (level == LIBBPF_DEBUG) return 0;
  va_list copy;
  va_copy(copy, args);
  int n = vsnprintf(nullptr, 0, fmt, copy);
  va_end(copy);
  if (n <= 0) return 0;
  std::string text(static_cast<size_t>(n) + 1, '\0');
  vsnprintf(&text[0], text.size(), fmt, args);
  text.resize(static_cast<size_t>(n));
  std::lock_guard<std::mutex> lock(g_logMutex);
  size_t start = 0;
  while (start < text.size()) {
    size_t nl = text.find('\n', start);
    if (nl == std::string::npos) {
      g_partial += text.substr(start);
      break;
    }
    g_partial += text.substr(start, nl - start);
    PushLine(std::move(g_partial));
    g_partial.clear();
    start = nl + 1;
  }
  return n;
}
}  // namespace

void InstallLibbpfPrint() { libbpf_set_print(PrintToBuffer); }

uint64_t LogMark() {
  std::lock_guard<std::mutex> lock(g_logMutex);
  return g_logSeq;
}

std::vector<std::string> LogSince(uint64_t mark) {
  std::lock_guard<std::mutex> lock(g_logMutex);
  std::vector<std::string> out;
  for (const auto& entry : g_log)
    if (entry.first > mark) out.push_back(entry.second);
  if (!g_partial.empty()) out.push_back(g_partial);
  return out;
}

std::vector<std::string> LogTail(size_t n) {
  std::lock_guard<std::mutex> lock(g_logMutex);
  std::vector<std::string> out;
  size_t skip = g_log.size() > n ? g_log.size() - n : 0;
  for (size_t i = skip; i < g_log.size(); i++) out.push_back(g_log[i].second);
  return out;
}

std::vector<std::string> SplitLines(const char* text, size_t len) {
  std::vector<std::string> lines;
  size_t end = strnlen(text, len);
  size_t start = 0;
  while (start < end) {
    const char* nl = static_cast<const char*>(memchr(text + start, '\n', end - start));
    size_t stop = nl ? static_cast<size_t>(nl - text) : end;
    lines.emplace_back(text + start, stop - start);
    start = stop + 1;
  }
  while (!lines.empty() && lines.back().empty()) lines.pop_back();
  return lines;
}

std::string TellingLine(const std::vector<std::string>& log) {
  static const char* const kNoise[] = {"processed ",  "verification time", "stack depth", "max_states_per_insn",
                                       "peak_states", "mark_read",         "-- END PROG LOAD LOG --",
                                       "libbpf: ",    "Validating ",       "Func#"};
  for (auto it = log.rbegin(); it != log.rend(); ++it) {
    std::string line = *it;
    while (!line.empty() && (line.back() == ' ' || line.back() == '\t' || line.back() == '\r')) line.pop_back();
    size_t lead = line.find_first_not_of(" \t");
    if (lead == std::string::npos) continue;
    line = line.substr(lead);
    bool noise = false;
    for (const char* prefix : kNoise)
      if (line.rfind(prefix, 0) == 0) noise = true;
    if (!noise) return line;
  }
  return "no reason given in the verifier log";
}

Napi::Array ToJsArray(Napi::Env env, const std::vector<std::string>& lines) {
  Napi::Array a = Napi::Array::New(env, lines.size());
  for (size_t i = 0; i < lines.size(); i++) a.Set(static_cast<uint32_t>(i), lines[i]);
  return a;
}

uint32_t PossibleCpus() {
  static int cpus = libbpf_num_possible_cpus();
  return cpus > 0 ? static_cast<uint32_t>(cpus) : 1;
}

bool IsPerCpuMapType(uint32_t type) {
  return type == BPF_MAP_TYPE_PERCPU_HASH || type == BPF_MAP_TYPE_PERCPU_ARRAY ||
         type == BPF_MAP_TYPE_LRU_PERCPU_HASH || type == BPF_MAP_TYPE_PERCPU_CGROUP_STORAGE;
}

}  // namespace sluice
