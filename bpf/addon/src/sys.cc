// Pins and bpffs, objects by id, BPF run-time stats, network namespaces and interface lookup.
#include "handles.h"

#include <cerrno>
#include <climits>
#include <cstring>

#include <net/if.h>
#include <sys/mount.h>
#include <sys/statfs.h>

namespace sluice {

namespace {
constexpr long kBpfFsMagic = 0xcafe4a11;

std::string ArgAbsPath(Napi::Env env, const Napi::Value& v, const std::string& what) {
  std::string path = ArgString(env, v, what + ": path");
  if (path.empty() || path[0] != '/') ThrowInvalid(env, what + ": path must be absolute, got " + Quote(path));
  if (path.size() >= PATH_MAX) ThrowInvalid(env, what + ": path is longer than " + std::to_string(PATH_MAX - 1) + " bytes");
  return path;
}

// "map", "program", "link" or "" from the fd's anon inode name.
std::string KindOfFd(int fd) {
  char link[64], target[128];
  snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
  ssize_t n = readlink(link, target, sizeof target - 1);
  if (n < 0) return "";
  target[n] = '\0';
  if (strcmp(target, "anon_inode:bpf-map") == 0) return "map";
  if (strcmp(target, "anon_inode:bpf-prog") == 0) return "program";
  // A link made by bpf_link_create is "bpf_link"; one reopened from a pin (bpf_obj_get) is "bpf-link".
  if (strcmp(target, "anon_inode:bpf_link") == 0 || strcmp(target, "anon_inode:bpf-link") == 0) return "link";
  return "";
}

Napi::Object WrapKind(Napi::Env env, const std::string& kind, Fd fd) {
  Napi::Object out = Napi::Object::New(env);
  out.Set("kind", kind);
  if (kind == "map") out.Set("handle", Map::Wrap(env, std::move(fd)));
  else if (kind == "program") out.Set("handle", Program::Wrap(env, std::move(fd)));
  else out.Set("handle", Link::Wrap(env, std::move(fd)));
  return out;
}
}  // namespace

Napi::Value PinFd(Napi::Env env, int fd, const std::string& what, const Napi::Value& pathValue) {
  std::string path = ArgAbsPath(env, pathValue, what);
  if (bpf_obj_pin(fd, path.c_str()) < 0) ThrowSyscall(env, what + " at " + Quote(path), "bpf_obj_pin", errno);
  return env.Undefined();
}

// openPinned(path) → {kind: "map" | "program" | "link", handle}
Napi::Value OpenPinned(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string path = ArgAbsPath(env, info[0], "open pinned object");
  std::string what = "open pinned object " + Quote(path);
  int fd = bpf_obj_get(path.c_str());
  if (fd < 0) ThrowSyscall(env, what, "bpf_obj_get", errno);
  Fd owned(fd);
  std::string kind = KindOfFd(fd);
  if (kind.empty()) ThrowInvalid(env, what + ": not a map, program or link");
  return WrapKind(env, kind, std::move(owned));
}

// unpin(path) — removes a pin; refuses paths outside a bpffs.
Napi::Value Unpin(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string path = ArgAbsPath(env, info[0], "unpin");
  std::string what = "unpin " + Quote(path);
  struct statfs st;
  if (statfs(path.c_str(), &st) < 0) ThrowSyscall(env, what, "statfs", errno);
  if (static_cast<long>(st.f_type) != kBpfFsMagic) ThrowInvalid(env, what + ": not in a bpf filesystem");
  if (unlink(path.c_str()) < 0) ThrowSyscall(env, what, "unlink", errno);
  return env.Undefined();
}

// getById(kind, id) → handle
Napi::Value GetById(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string kind = ArgString(env, info[0], "get by id: kind");
  if (kind != "map" && kind != "program" && kind != "link")
    ThrowInvalid(env, "get by id: kind must be \"map\", \"program\" or \"link\", got " + Quote(kind));
  uint32_t id = ArgU32(env, info[1], "get " + kind + " by id: id");
  std::string what = "get " + kind + " by id " + std::to_string(id);
  int fd;
  const char* syscall;
  if (kind == "map") {
    fd = bpf_map_get_fd_by_id(id);
    syscall = "bpf_map_get_fd_by_id";
  } else if (kind == "program") {
    fd = bpf_prog_get_fd_by_id(id);
    syscall = "bpf_prog_get_fd_by_id";
  } else {
    fd = bpf_link_get_fd_by_id(id);
    syscall = "bpf_link_get_fd_by_id";
  }
  if (fd < 0) {
    if (fd == -ENOENT) ThrowSyscallReason(env, what, "no " + kind + " has this id", syscall, ENOENT);
    ThrowSyscall(env, what, syscall, -fd);
  }
  Fd owned(fd);
  if (kind == "map") return Map::Wrap(env, std::move(owned));
  if (kind == "program") return Program::Wrap(env, std::move(owned));
  return Link::Wrap(env, std::move(owned));
}

// ---- stats ----------------------------------------------------------------------------------

Napi::Function Stats::Define(Napi::Env env) {
  return DefineClass(env, "Stats",
                     {InstanceAccessor<&Stats::GetClosed>("closed"), InstanceMethod<&Stats::Close>("close")});
}

Stats::Stats(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Stats>(info) {
  if (info.Length() != 1 || !info[0].IsExternal())
    ThrowInvalid(info.Env(), "Stats cannot be constructed directly: use enableStats()");
  fd_ = std::move(*info[0].As<Napi::External<Fd>>().Data());
}

Napi::Value Stats::GetClosed(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), !fd_.Valid()); }

Napi::Value Stats::Close(const Napi::CallbackInfo& info) {
  fd_.Reset();
  return info.Env().Undefined();
}

Napi::Value EnableStats(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = bpf_enable_stats(BPF_STATS_RUN_TIME);
  if (fd < 0) {
    int err = -fd;
    if (err == EINVAL) ThrowNotSupported(env, "enable bpf run-time stats: needs Linux 5.8", "bpf_enable_stats", "5.8");
    ThrowSyscall(env, "enable bpf run-time stats", "bpf_enable_stats", err);
  }
  Fd owned(fd);
  return Data(env)->statsCtor.New({Napi::External<Fd>::New(env, &owned)});
}

// ---- bpffs ----------------------------------------------------------------------------------

Napi::Value IsBpffs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string path = ArgAbsPath(env, info[0], "check bpffs");
  struct statfs st;
  if (statfs(path.c_str(), &st) < 0) return Napi::Boolean::New(env, false);
  return Napi::Boolean::New(env, static_cast<long>(st.f_type) == kBpfFsMagic);
}

// mountBpffs(path) → true if it mounted one, false if a bpffs was there already
Napi::Value MountBpffs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string path = ArgAbsPath(env, info[0], "mount bpffs");
  std::string what = "mount bpffs at " + Quote(path);
  struct statfs st;
  if (statfs(path.c_str(), &st) < 0) ThrowSyscall(env, what, "statfs", errno);
  if (static_cast<long>(st.f_type) == kBpfFsMagic) return Napi::Boolean::New(env, false);
  if (mount("bpf", path.c_str(), "bpf", 0, "mode=0700") < 0) ThrowSyscall(env, what, "mount", errno);
  return Napi::Boolean::New(env, true);
}

// ---- network namespaces ----------------------------------------------------------------------

// runInNetns(name, fn) → fn's result; the calling thread is back in its namespace afterwards, also on
// throw. If it cannot get back, the process aborts (see NetnsGuard).
Napi::Value RunInNetns(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string name = ArgString(env, info[0], "enter network namespace: name");
  if (name.empty() || name == "." || name == ".." || name.find('/') != std::string::npos || name.size() > 255)
    ThrowInvalid(env, "enter network namespace: " + Quote(name) + " is not a namespace name");
  if (!info[1].IsFunction()) ThrowInvalid(env, "enter network namespace " + Quote(name) + ": callback must be a function");
  Napi::Function fn = info[1].As<Napi::Function>();
  std::string what = "enter network namespace " + Quote(name);
  Fd target(open(("/var/run/netns/" + name).c_str(), O_RDONLY | O_CLOEXEC));
  if (!target.Valid()) {
    int err = errno;
    if (err == ENOENT) ThrowSyscallReason(env, what, "no such namespace (no /var/run/netns/" + name + ")", "open", err);
    ThrowSyscall(env, what, "open", err);
  }
  NetnsGuard inside(what);
  int r = inside.Enter(target.Get());
  if (r < 0) ThrowSyscall(env, what, inside.FailedCall(), -r);
  return fn.Call({});  // the guard returns the thread to its namespace after the call, also when it throws
}

Napi::Value IfNameToIndex(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string name = ArgString(env, info[0], "look up device: name");
  if (name.empty() || name.size() >= IF_NAMESIZE)
    ThrowInvalid(env, "look up device: " + Quote(name) + " is not a device name (1 to 15 characters)");
  return Napi::Number::New(env, if_nametoindex(name.c_str()));
}

Napi::Value IfIndexToName(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  uint32_t index = ArgU32(env, info[0], "look up device: ifindex");
  char name[IF_NAMESIZE];
  if (index == 0 || if_indextoname(index, name) == nullptr) return env.Null();
  return Napi::String::New(env, name);
}

}  // namespace sluice
