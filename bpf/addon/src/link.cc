// Attachments: XDP and TCX bpf_links, and the clsact + cls_bpf fallback for kernels without TCX.
#include "handles.h"

#include <cerrno>
#include <cstring>
#include <map>
#include <mutex>
#include <tuple>

#include <linux/if_link.h>
#include <linux/pkt_sched.h>
#include <linux/rtnetlink.h>
#include <sys/socket.h>
#include <sys/stat.h>

namespace sluice {

namespace {
// libbpf 1.1's headers predate TCX (Linux 6.6); these are the kernel's UAPI values.
constexpr uint32_t kTcxIngress = 46;
constexpr uint32_t kTcxEgress = 47;
constexpr uint32_t kLinkTypeXdp = 6;
constexpr uint32_t kLinkTypeTcx = 11;
constexpr int kENOTSUPP = 524;

std::string KindOf(uint32_t linkType) {
  switch (linkType) {
    case kLinkTypeXdp: return "xdp";
    case kLinkTypeTcx: return "tcx";
    default: return "link";
  }
}

// Runs fn with the calling thread in the namespace `target` and returns its result (0 or -errno);
// -errno if entering fails. The thread returns to its namespace after, or the process aborts.
template <typename Fn>
int InNetns(int target, const std::string& what, Fn fn) {
  NetnsGuard inside(what);
  int r = inside.Enter(target);
  if (r < 0) return r;
  return fn();
}

// How many tc filters hang on one side (`parent`) of a device's clsact qdisc, from an
// RTM_GETTFILTER dump in the calling thread's namespace; -errno when the dump fails, as it does
// when the device or the qdisc is gone.
int CountTcFilters(int ifindex, uint32_t parent) {
  Fd sock(socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE));
  if (!sock.Valid()) return -errno;
  struct {
    nlmsghdr header;
    tcmsg tc;
  } request{};
  request.header.nlmsg_len = NLMSG_LENGTH(sizeof(tcmsg));
  request.header.nlmsg_type = RTM_GETTFILTER;
  request.header.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
  request.header.nlmsg_seq = 1;
  request.tc.tcm_family = AF_UNSPEC;
  request.tc.tcm_ifindex = ifindex;
  request.tc.tcm_parent = parent;
  if (send(sock.Get(), &request, request.header.nlmsg_len, 0) < 0) return -errno;
  std::vector<char> buffer(64 * 1024);  // the kernel sends dump parts of at most 32 KiB
  int count = 0;
  for (;;) {
    ssize_t len = recv(sock.Get(), buffer.data(), buffer.size(), 0);
    if (len < 0) {
      if (errno == EINTR) continue;
      return -errno;
    }
    if (len == 0) return -EIO;
    int left = static_cast<int>(len);
    for (auto* h = reinterpret_cast<nlmsghdr*>(buffer.data()); NLMSG_OK(h, left); h = NLMSG_NEXT(h, left)) {
      if (h->nlmsg_type == NLMSG_DONE) {
        int status = h->nlmsg_len >= NLMSG_LENGTH(sizeof(int)) ? *static_cast<int*>(NLMSG_DATA(h)) : 0;
        return status < 0 ? status : count;
      }
      if (h->nlmsg_type == NLMSG_ERROR) {
        int err = static_cast<nlmsgerr*>(NLMSG_DATA(h))->error;
        return err < 0 ? err : count;
      }
      if (h->nlmsg_type == RTM_NEWTFILTER) count++;
    }
  }
}
}  // namespace

// bpf_tc_hook_create makes a clsact qdisc where the device has none and says EEXIST where it has
// one. A clsact is ours only in the first case: then the last of our filters to go takes it along,
// unless filters of others are on it by then. One we did not create stays, whatever we detach.
// The record is shared by our attachments on the device (ingress and egress), so it does not
// matter which of them goes last.
struct Link::Clsact {
  using Key = std::tuple<dev_t, ino_t, int>;  // the namespace's inode, the ifindex
  explicit Clsact(Key k) : key(k) {}
  ~Clsact();
  Key key;
  bool removed = false;
};

namespace {
std::mutex clsactMutex;

// Every clsact this process created and still has attachments on. Never destroyed, so attachments
// finalized at exit can still unregister.
std::map<Link::Clsact::Key, std::weak_ptr<Link::Clsact>>& Clsacts() {
  static auto* clsacts = new std::map<Link::Clsact::Key, std::weak_ptr<Link::Clsact>>();
  return *clsacts;
}

void ForgetClsact(const Link::Clsact::Key& key) {
  std::lock_guard<std::mutex> lock(clsactMutex);
  auto it = Clsacts().find(key);
  if (it != Clsacts().end() && it->second.expired()) Clsacts().erase(it);
}

// The record of a clsact we just created on the device.
std::shared_ptr<Link::Clsact> RecordClsact(const Link::Clsact::Key& key) {
  auto clsact = std::make_shared<Link::Clsact>(key);
  std::lock_guard<std::mutex> lock(clsactMutex);
  Clsacts()[key] = clsact;
  return clsact;
}

// The record of the device's clsact if we created it and it is still there, else null.
std::shared_ptr<Link::Clsact> OwnedClsact(const Link::Clsact::Key& key) {
  std::shared_ptr<Link::Clsact> clsact;  // released after the lock: its destructor takes it
  {
    std::lock_guard<std::mutex> lock(clsactMutex);
    auto it = Clsacts().find(key);
    if (it != Clsacts().end()) clsact = it->second.lock();
  }
  if (clsact && clsact->removed) clsact.reset();
  return clsact;
}

// Deletes our clsact from the device when no filter is left on either side; keeps it when one is,
// or when the filters cannot be listed. Runs with the thread in the device's namespace. 0 or -errno.
int RemoveClsactIfUnused(int ifindex, Link::Clsact* clsact) {
  if (clsact == nullptr || clsact->removed) return 0;
  for (uint32_t side : {TC_H_MIN_INGRESS, TC_H_MIN_EGRESS})
    if (CountTcFilters(ifindex, TC_H_MAKE(TC_H_CLSACT, side)) != 0) return 0;
  // Both attach points at once: libbpf deletes the qdisc itself rather than flushing one side.
  LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = ifindex,
              .attach_point = static_cast<bpf_tc_attach_point>(BPF_TC_INGRESS | BPF_TC_EGRESS));
  int r = bpf_tc_hook_destroy(&hook);
  if (r < 0 && r != -ENOENT && r != -EINVAL && r != -ENODEV) return r;
  clsact->removed = true;
  std::shared_ptr<Link::Clsact> current;  // released after the lock: its destructor takes it
  std::lock_guard<std::mutex> lock(clsactMutex);
  auto it = Clsacts().find(clsact->key);
  if (it != Clsacts().end() && (current = it->second.lock()).get() == clsact) Clsacts().erase(it);
  return 0;
}
}  // namespace

Link::Clsact::~Clsact() { ForgetClsact(key); }

int QueryLinkInfo(int fd, bpf_link_info* out) {
  memset(out, 0, sizeof *out);
  __u32 len = sizeof *out;
  int r = bpf_obj_get_info_by_fd(fd, out, &len);
  return r < 0 ? -errno : 0;
}

Napi::Function Link::Define(Napi::Env env) {
  return DefineClass(env, "Link",
                     {
                         InstanceAccessor<&Link::GetFd>("fd"),
                         InstanceAccessor<&Link::GetKind>("kind"),
                         InstanceAccessor<&Link::GetName>("name"),
                         InstanceAccessor<&Link::GetId>("id"),
                         InstanceAccessor<&Link::GetClosed>("closed"),
                         InstanceMethod<&Link::Update>("update"),
                         InstanceMethod<&Link::Detach>("detach"),
                         InstanceMethod<&Link::Info>("info"),
                         InstanceMethod<&Link::Pin>("pin"),
                         InstanceMethod<&Link::Close>("close"),
                     });
}

struct LinkInit {
  Fd fd;
  std::unique_ptr<Link::TcLegacy> tc;
  std::string name;
};

Napi::Object Link::Wrap(Napi::Env env, Fd fd, const std::string& name) {
  LinkInit init{std::move(fd), nullptr, name};
  return Data(env)->linkCtor.New({Napi::External<LinkInit>::New(env, &init)});
}

Napi::Object Link::WrapTc(Napi::Env env, std::unique_ptr<TcLegacy> tc, const std::string& name) {
  LinkInit init{Fd(), std::move(tc), name};
  return Data(env)->linkCtor.New({Napi::External<LinkInit>::New(env, &init)});
}

Link::Link(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Link>(info) {
  Napi::Env env = info.Env();
  if (info.Length() != 1 || !info[0].IsExternal())
    ThrowInvalid(env, "a Link cannot be constructed directly: use attachXdp(), attachTc() or openPinned()");
  LinkInit* init = info[0].As<Napi::External<LinkInit>>().Data();
  if (init->tc) {
    tc_ = std::move(init->tc);
    kind_ = "tc";
  } else {
    bpf_link_info li;
    int r = QueryLinkInfo(init->fd.Get(), &li);
    if (r < 0) ThrowSyscall(env, "read link info", "bpf_obj_get_info_by_fd", -r);
    fd_ = std::move(init->fd);
    id_ = li.id;
    linkType_ = li.type;
    kind_ = KindOf(li.type);
  }
  name_ = init->name;
}

void Link::CheckOpen(Napi::Env env) const {
  if (closed_ || (!tc_ && !fd_.Valid()))
    ThrowClosed(env, kind_ + " link" + (name_.empty() ? std::string() : " of program " + Quote(name_)) + " is closed");
}

Napi::Value Link::GetFd(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), fd_.Get()); }
Napi::Value Link::GetKind(const Napi::CallbackInfo& info) { return Napi::String::New(info.Env(), kind_); }
Napi::Value Link::GetName(const Napi::CallbackInfo& info) { return Napi::String::New(info.Env(), name_); }
Napi::Value Link::GetId(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), id_); }
Napi::Value Link::GetClosed(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), closed_ || (!tc_ && !fd_.Valid()));
}

// update(newProgram, expectedOldProgram?) — atomic replacement of the program behind the link.
Napi::Value Link::Update(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  CheckOpen(env);
  std::string what = "update " + kind_ + " link" + (name_.empty() ? std::string() : " of program " + Quote(name_));
  AddonData* data = Data(env);
  Program* next = UnwrapAs<Program>(env, info[0], data->programCtor, what + ": the new program must be a Program");
  int nextFd = next->FdOrThrow(env);
  uint32_t wantType = kind_ == "xdp" ? static_cast<uint32_t>(BPF_PROG_TYPE_XDP)
                      : (kind_ == "tcx" || kind_ == "tc") ? static_cast<uint32_t>(BPF_PROG_TYPE_SCHED_CLS)
                                                          : next->Type();
  if (next->Type() != wantType)
    ThrowInvalid(env, what + ": program " + Quote(next->Name()) + " has type " + std::to_string(next->Type()) +
                          ", the link needs type " + std::to_string(wantType));
  int oldFd = -1;
  if (!info[1].IsUndefined() && !info[1].IsNull())
    oldFd = UnwrapAs<Program>(env, info[1], data->programCtor, what + ": the expected old program must be a Program")
                ->FdOrThrow(env);
  if (tc_) {
    if (oldFd >= 0) {
      bpf_prog_info pi;
      int r = QueryProgInfo(oldFd, &pi);
      if (r < 0) ThrowSyscall(env, what, "bpf_obj_get_info_by_fd", -r);
      if (pi.id != tc_->progId) ThrowSyscall(env, what + " (another program is attached now)", "bpf_tc_attach", EPERM);
    }
    LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = tc_->ifindex,
                .attach_point = static_cast<bpf_tc_attach_point>(tc_->attachPoint));
    LIBBPF_OPTS(bpf_tc_opts, opts, .prog_fd = nextFd, .flags = BPF_TC_F_REPLACE, .handle = tc_->handle,
                .priority = tc_->priority);
    int r = InNetns(tc_->netns.Get(), what, [&] { return bpf_tc_attach(&hook, &opts); });
    if (r < 0) ThrowSyscall(env, what, "bpf_tc_attach", -r);
    tc_->progId = opts.prog_id;
    return env.Undefined();
  }
  LIBBPF_OPTS(bpf_link_update_opts, opts);
  if (oldFd >= 0) {
    opts.flags = BPF_F_REPLACE;
    opts.old_prog_fd = static_cast<__u32>(oldFd);
  }
  int r = bpf_link_update(fd_.Get(), nextFd, &opts);
  if (r < 0) ThrowSyscall(env, what, "bpf_link_update", -r);
  name_ = next->Name();
  return env.Undefined();
}

// Removes the cls_bpf filter and, when it was the last filter on a clsact we created, the clsact.
void Link::DetachTc(Napi::Env env, const char* verb) {
  std::string what = std::string(verb) + " tc filter of program " + Quote(name_);
  LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = tc_->ifindex,
              .attach_point = static_cast<bpf_tc_attach_point>(tc_->attachPoint));
  LIBBPF_OPTS(bpf_tc_opts, opts, .handle = tc_->handle, .priority = tc_->priority);
  int removeError = 0;
  int r = InNetns(tc_->netns.Get(), what, [&] {
    int detached = bpf_tc_detach(&hook, &opts);
    // ENOENT: someone removed the filter already; the clsact may still be ours to remove.
    if (detached == 0 || detached == -ENOENT) removeError = RemoveClsactIfUnused(tc_->ifindex, tc_->clsact.get());
    return detached;
  });
  closed_ = true;
  tc_->netns.Reset();
  tc_->clsact.reset();
  if (r < 0 && r != -ENOENT && r != -ENODEV && r != -EINVAL) ThrowSyscall(env, what, "bpf_tc_detach", -r);
  if (removeError < 0)
    ThrowSyscall(env, what + ": remove the clsact qdisc it added", "bpf_tc_hook_destroy", -removeError);
}

Napi::Value Link::Detach(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  CheckOpen(env);
  if (tc_) {
    DetachTc(env, "detach");
    return env.Undefined();
  }
  int r = bpf_link_detach(fd_.Get());
  if (r < 0) ThrowSyscall(env, "detach " + kind_ + " link of program " + Quote(name_), "bpf_link_detach", -r);
  fd_.Reset();
  closed_ = true;
  return env.Undefined();
}

Napi::Value Link::Info(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  CheckOpen(env);
  Napi::Object o = Napi::Object::New(env);
  if (tc_) {
    o.Set("id", 0);
    o.Set("type", 0);
    o.Set("kind", "tc");
    o.Set("progId", tc_->progId);
    o.Set("ifindex", tc_->ifindex);
    o.Set("attachType", tc_->attachPoint == BPF_TC_INGRESS ? "ingress" : "egress");
    o.Set("handle", tc_->handle);
    o.Set("priority", tc_->priority);
    return o;
  }
  bpf_link_info li;
  int r = QueryLinkInfo(fd_.Get(), &li);
  if (r < 0) ThrowSyscall(env, "read info of " + kind_ + " link", "bpf_obj_get_info_by_fd", -r);
  o.Set("id", li.id);
  o.Set("type", li.type);
  o.Set("kind", KindOf(li.type));
  o.Set("progId", li.prog_id);
  if (li.type == kLinkTypeXdp) {
    o.Set("ifindex", li.xdp.ifindex);
  } else if (li.type == kLinkTypeTcx) {
    // tcx {ifindex, attach_type} shares the union's start with xdp {ifindex}; libbpf 1.1 lacks the member.
    const __u32* tcx = &li.xdp.ifindex;
    o.Set("ifindex", tcx[0]);
    o.Set("attachType", tcx[1] == kTcxIngress ? "ingress" : tcx[1] == kTcxEgress ? "egress" : "unknown");
  }
  return o;
}

Napi::Value Link::Pin(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  CheckOpen(env);
  if (tc_)
    ThrowNotSupported(env, "pin tc attachment of program " + Quote(name_) + ": cls_bpf filters have no link to pin",
                      "tcx links", "6.6");
  return PinFd(env, fd_.Get(), "pin " + kind_ + " link of program " + Quote(name_), info[0]);
}

Napi::Value Link::Close(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (tc_ && !closed_) {
    DetachTc(env, "close");
    return env.Undefined();
  }
  fd_.Reset();
  closed_ = true;
  return env.Undefined();
}

// attachXdp(program, ifindex, mode: "auto" | "native" | "generic") → Link
Napi::Value AttachXdp(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  AddonData* data = Data(env);
  Program* prog = UnwrapAs<Program>(env, info[0], data->programCtor, "attach xdp: program must be a Program");
  std::string what = "attach xdp program " + Quote(prog->Name());
  int progFd = prog->FdOrThrow(env);
  if (prog->Type() != BPF_PROG_TYPE_XDP)
    ThrowInvalid(env, what + ": program type is " + ProgTypeName(prog->Type()) + "; XDP needs an xdp program");
  uint32_t ifindex = ArgU32(env, info[1], what + ": ifindex");
  if (ifindex == 0 || ifindex > 0x7fffffff) ThrowInvalid(env, what + ": ifindex must be from 1 to 2147483647");
  std::string mode = info[2].IsUndefined() ? "auto" : ArgString(env, info[2], what + ": mode");
  uint32_t flags;
  if (mode == "auto") flags = 0;
  else if (mode == "native") flags = XDP_FLAGS_DRV_MODE;
  else if (mode == "generic") flags = XDP_FLAGS_SKB_MODE;
  else ThrowInvalid(env, what + ": mode must be \"auto\", \"native\" or \"generic\", got " + Quote(mode));
  LIBBPF_OPTS(bpf_link_create_opts, opts, .flags = flags);
  int fd = bpf_link_create(progFd, static_cast<int>(ifindex), BPF_XDP, &opts);
  if (fd < 0) ThrowSyscall(env, what, "bpf_link_create", -fd);
  return Link::Wrap(env, Fd(fd), prog->Name());
}

// attachTc(program, ifindex, direction: "ingress" | "egress", mode: "auto" | "tcx" | "legacy",
//          priority?: cls_bpf filter priority, legacy mode only; 0 or absent: the kernel picks) → Link
Napi::Value AttachTc(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  AddonData* data = Data(env);
  Program* prog = UnwrapAs<Program>(env, info[0], data->programCtor, "attach tc: program must be a Program");
  std::string what = "attach tc program " + Quote(prog->Name());
  int progFd = prog->FdOrThrow(env);
  if (prog->Type() != BPF_PROG_TYPE_SCHED_CLS)
    ThrowInvalid(env, what + ": program type is " + ProgTypeName(prog->Type()) + "; TC needs a sched_cls program");
  uint32_t ifindex = ArgU32(env, info[1], what + ": ifindex");
  if (ifindex == 0 || ifindex > 0x7fffffff) ThrowInvalid(env, what + ": ifindex must be from 1 to 2147483647");
  std::string direction = ArgString(env, info[2], what + ": direction");
  if (direction != "ingress" && direction != "egress")
    ThrowInvalid(env, what + ": direction must be \"ingress\" or \"egress\", got " + Quote(direction));
  bool ingress = direction == "ingress";
  std::string mode = info[3].IsUndefined() ? "auto" : ArgString(env, info[3], what + ": mode");
  if (mode != "auto" && mode != "tcx" && mode != "legacy")
    ThrowInvalid(env, what + ": mode must be \"auto\", \"tcx\" or \"legacy\", got " + Quote(mode));
  // The range is libbpf's to check (bpf_tc_attach: at most 65535); attachTc() checks it first.
  uint32_t priority = info[4].IsUndefined() ? 0 : ArgU32(env, info[4], what + ": priority");
  if (priority != 0 && mode != "legacy")
    ThrowInvalid(env, what + ": a priority needs mode \"legacy\" (tcx links have none)");

  if (mode != "legacy") {
    LIBBPF_OPTS(bpf_link_create_opts, opts);
    int fd = bpf_link_create(progFd, static_cast<int>(ifindex),
                             static_cast<bpf_attach_type>(ingress ? kTcxIngress : kTcxEgress), &opts);
    if (fd >= 0) return Link::Wrap(env, Fd(fd), prog->Name());
    int err = -fd;
    bool missing = err == EINVAL || err == EOPNOTSUPP || err == kENOTSUPP;
    if (!missing) ThrowSyscall(env, what, "bpf_link_create", err);
    if (mode == "tcx")
      ThrowNotSupported(env, what + ": this kernel has no tcx links (needs Linux 6.6)", "tcx links", "6.6");
  }
  auto tc = std::make_unique<Link::TcLegacy>();
  tc->ifindex = static_cast<int>(ifindex);
  tc->attachPoint = ingress ? BPF_TC_INGRESS : BPF_TC_EGRESS;
  tc->netns.Reset(open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC));
  if (!tc->netns.Valid()) ThrowSyscall(env, what, "open", errno);
  struct stat netns;
  if (fstat(tc->netns.Get(), &netns) < 0) ThrowSyscall(env, what, "fstat", errno);
  Link::Clsact::Key key{netns.st_dev, netns.st_ino, tc->ifindex};
  LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = tc->ifindex, .attach_point = static_cast<bpf_tc_attach_point>(tc->attachPoint));
  int r = bpf_tc_hook_create(&hook);
  if (r < 0 && r != -EEXIST) ThrowSyscall(env, what, "bpf_tc_hook_create", -r);
  tc->clsact = r == 0 ? RecordClsact(key) : OwnedClsact(key);
  LIBBPF_OPTS(bpf_tc_opts, opts, .prog_fd = progFd, .priority = priority);
  r = bpf_tc_attach(&hook, &opts);
  if (r < 0) {
    // Leave the device as it was: a clsact made for this filter goes with it.
    RemoveClsactIfUnused(tc->ifindex, tc->clsact.get());
    ThrowSyscall(env, what, "bpf_tc_attach", -r);
  }
  tc->handle = opts.handle;
  tc->priority = opts.priority;
  tc->progId = opts.prog_id;
  return Link::WrapTc(env, std::move(tc), prog->Name());
}

}  // namespace sluice
