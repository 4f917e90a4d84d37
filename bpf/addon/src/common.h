// Shared pieces of the sluice libbpf binding: RAII fds, typed JS errors, argument checks, libbpf log capture.
#pragma once

#include <napi.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include <cstdint>
#include <string>
#include <vector>

#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

namespace sluice {

// An owned file descriptor: closed on destruction, never copied.
class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() { Reset(); }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  Fd(Fd&& other) noexcept : fd_(other.Release()) {}
  Fd& operator=(Fd&& other) noexcept {
    if (this != &other) Reset(other.Release());
    return *this;
  }
  int Get() const { return fd_; }
  bool Valid() const { return fd_ >= 0; }
  int Release() {
    int fd = fd_;
    fd_ = -1;
    return fd;
  }
  void Reset(int fd = -1) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = fd;
  }

 private:
  int fd_ = -1;
};

// dup() with close-on-exec; -errno on failure.
int DupFd(int fd);

// Puts the calling thread in another network namespace until destroyed, then returns it to the
// one it was in. A failed return is not an error to throw: if that setns fails, the destructor
// prints why on stderr and aborts the process, because the thread (the JavaScript thread, for
// calls from it) would stay in the wrong namespace, and so would every socket it opens later.
class NetnsGuard {
 public:
  // `what` names the operation for the abort message: "enter network namespace \"x\"".
  explicit NetnsGuard(std::string what) : what_(std::move(what)) {}
  ~NetnsGuard();
  NetnsGuard(const NetnsGuard&) = delete;
  NetnsGuard& operator=(const NetnsGuard&) = delete;

  // Enters the namespace `target` (an fd of /proc/…/ns/net or /var/run/netns/…): 0, or -errno with
  // the thread where it was and FailedCall() naming the failing call ("open" or "setns").
  int Enter(int target);
  const char* FailedCall() const { return failedCall_; }

 private:
  std::string what_;
  Fd original_;
  bool entered_ = false;
  const char* failedCall_ = "";
};

// Holds SIGPROF off the calling thread until destroyed. The verifier gives up with EAGAIN when
// a signal is pending, and libbpf retries only a few times: under a profiler (node --cpu-prof
// signals the JavaScript thread every millisecond or so) a load that takes longer than that
// never finishes. Blocked, the signal waits until the load is over; the profiler loses a sample.
class ProfilerSignalGuard {
 public:
  ProfilerSignalGuard() {
    sigset_t prof;
    sigemptyset(&prof);
    sigaddset(&prof, SIGPROF);
    pthread_sigmask(SIG_BLOCK, &prof, &old_);
  }
  ~ProfilerSignalGuard() { pthread_sigmask(SIG_SETMASK, &old_, nullptr); }
  ProfilerSignalGuard(const ProfilerSignalGuard&) = delete;
  ProfilerSignalGuard& operator=(const ProfilerSignalGuard&) = delete;

 private:
  sigset_t old_;
};

// Per-environment state: error classes registered by the TS facade and the wrapped classes.
struct AddonData {
  Napi::FunctionReference syscallError;
  Napi::FunctionReference verifierError;
  Napi::FunctionReference invalidArgumentError;
  Napi::FunctionReference invalidStateError;
  Napi::FunctionReference closedError;
  Napi::FunctionReference notSupportedError;
  Napi::FunctionReference mapCtor;
  Napi::FunctionReference programCtor;
  Napi::FunctionReference linkCtor;
  Napi::FunctionReference objectCtor;
  Napi::FunctionReference statsCtor;
};

AddonData* Data(Napi::Env env);

// ---- errors -------------------------------------------------------------------------------
// Build (not throw) typed errors; used by async workers that reject promises.
Napi::Value MakeSyscallError(Napi::Env env, const std::string& what, const char* syscall, int err,
                             const std::vector<std::string>* log = nullptr, const std::string& reason = "");
Napi::Value MakeVerifierError(Napi::Env env, const std::string& what, int err,
                              const std::vector<std::string>& log);
Napi::Value MakeSimpleError(Napi::Env env, Napi::FunctionReference& ctor, const char* fallbackCode,
                            const std::string& message);

[[noreturn]] void ThrowValue(Napi::Env env, Napi::Value error);
[[noreturn]] void ThrowSyscall(Napi::Env env, const std::string& what, const char* syscall, int err,
                               const std::vector<std::string>* log = nullptr);
// Like ThrowSyscall, with `reason` instead of the errno's text in the message.
[[noreturn]] void ThrowSyscallReason(Napi::Env env, const std::string& what, const std::string& reason,
                                     const char* syscall, int err);
[[noreturn]] void ThrowInvalid(Napi::Env env, const std::string& message);
[[noreturn]] void ThrowState(Napi::Env env, const std::string& message);
[[noreturn]] void ThrowClosed(Napi::Env env, const std::string& message);
[[noreturn]] void ThrowNotSupported(Napi::Env env, const std::string& message, const std::string& feature,
                                    const std::string& minKernel);

std::string ErrnoText(int err);
std::string Quote(const std::string& s);
// libbpf's name of a program type ("xdp", "sched_cls"), or "type N" for one it does not know.
std::string ProgTypeName(uint32_t type);

// ---- arguments ----------------------------------------------------------------------------
struct Bytes {
  uint8_t* data = nullptr;
  size_t len = 0;
};

bool IsBytes(const Napi::Value& v);
// One N-API call: true and fills `out` if v is a Uint8Array (or Buffer). The hot path of element ops.
inline bool GetBytes(napi_env env, napi_value v, Bytes* out) {
  napi_typedarray_type type;
  size_t length;
  void* data;
  if (napi_get_typedarray_info(env, v, &type, &length, &data, nullptr, nullptr) != napi_ok ||
      type != napi_uint8_array)
    return false;
  out->data = static_cast<uint8_t*>(data);
  out->len = length;
  return true;
}
Bytes ArgBytes(Napi::Env env, const Napi::Value& v, const std::string& what);
uint32_t ArgU32(Napi::Env env, const Napi::Value& v, const std::string& what);
uint32_t OptU32(Napi::Env env, const Napi::Object& o, const char* key, uint32_t def, const std::string& what);
int32_t ArgFdNumber(Napi::Env env, const Napi::Value& v, const std::string& what);
std::string ArgString(Napi::Env env, const Napi::Value& v, const std::string& what);
Napi::Object ArgObject(Napi::Env env, const Napi::Value& v, const std::string& what);
bool ArgBool(Napi::Env env, const Napi::Value& v, const std::string& what);
// Object names the kernel keeps: 0..15 characters of [A-Za-z0-9_.].
std::string ArgObjName(Napi::Env env, const Napi::Value& v, const std::string& what);

// Unwrap a native wrapper of class T, or throw InvalidArgumentError mentioning `what`.
template <typename T>
T* UnwrapAs(Napi::Env env, const Napi::Value& v, Napi::FunctionReference& ctor, const std::string& what) {
  if (!v.IsObject() || ctor.IsEmpty() || !v.As<Napi::Object>().InstanceOf(ctor.Value()))
    ThrowInvalid(env, what);
  void* raw = nullptr;
  if (napi_unwrap(env, v, &raw) != napi_ok || raw == nullptr) ThrowInvalid(env, what);
  return static_cast<T*>(raw);
}

// ---- libbpf log ---------------------------------------------------------------------------
void InstallLibbpfPrint();
uint64_t LogMark();
std::vector<std::string> LogSince(uint64_t mark);
std::vector<std::string> LogTail(size_t n);
std::vector<std::string> SplitLines(const char* text, size_t len);
// The last line of a verifier log that says why (skips the statistics lines).
std::string TellingLine(const std::vector<std::string>& log);

Napi::Array ToJsArray(Napi::Env env, const std::vector<std::string>& lines);

uint32_t PossibleCpus();
bool IsPerCpuMapType(uint32_t type);

}  // namespace sluice
