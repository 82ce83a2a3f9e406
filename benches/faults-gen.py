import struct, sys
def csum(b):
    if len(b)%2: b+=b'\0'
    s=sum(struct.unpack('!%dH'%(len(b)//2),b)); s=(s>>16)+(s&0xffff); s+=s>>16; return (~s)&0xffff
def frame(src,sp,dst,dp,seq,ack,flags,payload):
    tcp=struct.pack('!HHIIBBHHH',sp,dp,seq,ack,5<<4,flags,65535,0,0)+payload
    ip=struct.pack('!BBHHHBBH4s4s',0x45,0,20+len(tcp),0,0,64,6,0,bytes(src),bytes(dst))
    ip=ip[:10]+struct.pack('!H',csum(ip))+ip[12:]
    ph=bytes(src)+bytes(dst)+struct.pack('!BBH',0,6,len(tcp))
    tcp=tcp[:16]+struct.pack('!H',csum(ph+tcp))+tcp[18:]
    return b'\0'*12+b'\x08\x00'+ip+tcp
def build(path, clients, secs, t0):
    out=[]
    S=10**9; srv=[10,0,0,1]; n=0
    conns=[]
    for c in range(clients):
        cl=[10,1,0,c+2]; cp=40000+c; ts=t0+c*1000
        out.append((ts,frame(cl,cp,srv,11211,1000,0,0x02,b'')))
        out.append((ts+1,frame(srv,11211,cl,cp,5000,1001,0x12,b'')))
        out.append((ts+2,frame(cl,cp,srv,11211,1001,5001,0x10,b'')))
        conns.append([cl,cp,1001,5001])
    for ms in range(0,secs*1000,50):
        for c,cn in enumerate(conns):
            ts=t0+S//10+ms*10**6+c*10000
            key='k%d-%d'%(c,ms%400)
            req=('get %s\r\n'%key).encode()
            resp=(('VALUE %s 0 2\r\nxx\r\nEND\r\n'%key) if (ms//50)%2==0 else 'END\r\n').encode()
            cl,cp,cs,ss=cn
            out.append((ts,frame(cl,cp,srv,11211,cs,ss,0x18,req))); cs+=len(req)
            out.append((ts+100000,frame(srv,11211,cl,cp,ss,cs,0x18,resp))); ss+=len(resp)
            cn[2]=cs; cn[3]=ss; n+=1
    out.sort(key=lambda x:x[0])
    with open(path,'wb') as f:
        f.write(struct.pack('<IHHiIII',0xa1b2c3d4,2,4,0,0,262144,1))
        for ts,fr in out:
            f.write(struct.pack('<IIII',ts//S,(ts%S)//1000,len(fr),len(fr))+fr)
    return n
T0=1700000000*10**9
print(build(sys.argv[1],int(sys.argv[2]),int(sys.argv[3]),T0+int(sys.argv[4])*3600*10**9))
