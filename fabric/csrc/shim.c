#include "shim.h"

uint32_t mfi_version(void) { return FI_VERSION(FI_MAJOR_VERSION, FI_MINOR_VERSION); }
struct fi_info *mfi_allocinfo(void) { return fi_allocinfo(); }
int mfi_close(struct fid *fid) { return fi_close(fid); }
int mfi_domain(struct fid_fabric *fabric, struct fi_info *info,
               struct fid_domain **domain) {
  return fi_domain(fabric, info, domain, NULL);
}
int mfi_endpoint(struct fid_domain *domain, struct fi_info *info,
                 struct fid_ep **ep) {
  return fi_endpoint(domain, info, ep, NULL);
}
int mfi_cq_open(struct fid_domain *domain, struct fi_cq_attr *attr,
                struct fid_cq **cq) {
  return fi_cq_open(domain, attr, cq, NULL);
}
int mfi_av_open(struct fid_domain *domain, struct fi_av_attr *attr,
                struct fid_av **av) {
  return fi_av_open(domain, attr, av, NULL);
}
int mfi_ep_bind(struct fid_ep *ep, struct fid *bfid, uint64_t flags) {
  return fi_ep_bind(ep, bfid, flags);
}
int mfi_enable(struct fid_ep *ep) { return fi_enable(ep); }
int mfi_getname(struct fid_ep *ep, void *addr, size_t *addrlen) {
  return fi_getname(&ep->fid, addr, addrlen);
}
int mfi_av_insert(struct fid_av *av, const void *addr, size_t count,
                  fi_addr_t *fi_addr, uint64_t flags) {
  return fi_av_insert(av, addr, count, fi_addr, flags, NULL);
}
int mfi_mr_reg(struct fid_domain *domain, const void *buf, size_t len,
               uint64_t access, uint64_t requested_key, uint64_t flags,
               struct fid_mr **mr) {
  return fi_mr_reg(domain, buf, len, access, 0, requested_key, flags, mr, NULL);
}
uint64_t mfi_mr_key(struct fid_mr *mr) { return fi_mr_key(mr); }
void *mfi_mr_desc(struct fid_mr *mr) { return fi_mr_desc(mr); }
ssize_t mfi_read(struct fid_ep *ep, void *buf, size_t len, void *desc,
                 fi_addr_t src_addr, uint64_t addr, uint64_t key,
                 void *context) {
  return fi_read(ep, buf, len, desc, src_addr, addr, key, context);
}
ssize_t mfi_tsend(struct fid_ep *ep, const void *buf, size_t len, void *desc,
                  fi_addr_t dest_addr, uint64_t tag, void *context) {
  return fi_tsend(ep, buf, len, desc, dest_addr, tag, context);
}
ssize_t mfi_trecv(struct fid_ep *ep, void *buf, size_t len, void *desc,
                  fi_addr_t src_addr, uint64_t tag, uint64_t ignore,
                  void *context) {
  return fi_trecv(ep, buf, len, desc, src_addr, tag, ignore, context);
}
ssize_t mfi_cq_read(struct fid_cq *cq, void *buf, size_t count) {
  return fi_cq_read(cq, buf, count);
}
ssize_t mfi_cq_readerr(struct fid_cq *cq, struct fi_cq_err_entry *buf,
                       uint64_t flags) {
  return fi_cq_readerr(cq, buf, flags);
}
const char *mfi_cq_strerror(struct fid_cq *cq, int prov_errno,
                            const void *err_data, char *buf, size_t len) {
  return fi_cq_strerror(cq, prov_errno, err_data, buf, len);
}
