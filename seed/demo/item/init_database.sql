--
-- PostgreSQL database dump
--

-- Dumped from database version 12.2
-- Dumped by pg_dump version 12.3

SET statement_timeout = 0;
SET lock_timeout = 0;
SET idle_in_transaction_session_timeout = 0;
SET client_encoding = 'UTF8';
SET standard_conforming_strings = on;
SELECT pg_catalog.set_config('search_path', '', false);
SET check_function_bodies = false;
SET xmloption = content;
SET client_min_messages = warning;
SET row_security = off;

SET default_tablespace = '';

SET default_table_access_method = heap;

--
-- Name: item; Type: TABLE; Schema: public; Owner: postgres
--

CREATE TABLE public.item (
    id bigint NOT NULL,
    name character varying NOT NULL,
    broadcaster character varying NOT NULL,
    category character varying,
    price integer NOT NULL
);


ALTER TABLE public.item OWNER TO postgres;

--
-- Name: COLUMN item.name; Type: COMMENT; Schema: public; Owner: postgres
--

COMMENT ON COLUMN public.item.name IS '방송상품명';


--
-- Name: COLUMN item.broadcaster; Type: COMMENT; Schema: public; Owner: postgres
--

COMMENT ON COLUMN public.item.broadcaster IS '방송사';


--
-- Name: COLUMN item.category; Type: COMMENT; Schema: public; Owner: postgres
--

COMMENT ON COLUMN public.item.category IS '방송 상품 카테고리';


--
-- Name: COLUMN item.price; Type: COMMENT; Schema: public; Owner: postgres
--

COMMENT ON COLUMN public.item.price IS '상품가격';


--
-- Name: item_id_seq; Type: SEQUENCE; Schema: public; Owner: postgres
--

CREATE SEQUENCE public.item_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;


ALTER TABLE public.item_id_seq OWNER TO postgres;

--
-- Name: item_id_seq; Type: SEQUENCE OWNED BY; Schema: public; Owner: postgres
--

ALTER SEQUENCE public.item_id_seq OWNED BY public.item.id;


--
-- Name: item id; Type: DEFAULT; Schema: public; Owner: postgres
--

ALTER TABLE ONLY public.item ALTER COLUMN id SET DEFAULT nextval('public.item_id_seq'::regclass);


--
-- Data for Name: item; Type: TABLE DATA; Schema: public; Owner: postgres
--

COPY public.item (id, name, broadcaster, category, price) FROM stdin;
1	클레어진 레그쉐이퍼 3컬러 택1	gsshop	패션·잡화	211900
2	라이브 건강생활	hmall	\N	0
3	[주말특가]베베숲 올인원 아기 물티슈 패키지	hmall	유아·아동	25000
4	[주말특가]베베숲 올인원 아기 물티슈 3팩	hmall	유아·아동	31900
5	[주말특가]베베숲 올인원 아기 물티슈 5단계	hmall	유아·아동	24000
6	셀라온 앰플 2종 세트	gsshop	화장품·미용	60000
7	자연담은 골드 견과 한줌 (2개월분)	hnsmall	식품·건강	0
8	자연담은 골드 견과 한줌 3박스	hnsmall	식품·건강	15000
9	여행이야기 정보	nsmall	\N	0
10	로렌제이 더블 크로스백 한정 패키지	lottemall	패션·잡화	51900
11	리틀스텝 울트라 아기 물티슈 2단계	hmall	유아·아동	0
12	리틀스텝 울트라 아기 물티슈 신생아용	hmall	유아·아동	17500
13	에어로웰 65인치 UHD TV 풀세트	hmall	가전·디지털	307900
14	[무료배송]엘리뉴 울트라 선크림 프리미엄 라인	hmall	화장품·미용	96000
15	더블유진 컴포트 스니커즈 (55~88)	lottemall	패션·잡화	95900
16	셀라온 시그니처 마스크팩 프리미엄 라인	cjmall	화장품·미용	69300
17	더마린 올인원 선크림 시즌6	nsmall	화장품·미용	99900
18	18년형 마운틴웨이 등산화 (S~XL)	hnsmall	스포츠·레저	157900
19	18년형 마운틴웨이 등산화 5종 세트	hnsmall	스포츠·레저	126000
20	[방송한정]밀라노스텝 데님 팬츠 4컬러 택1	gsshop	패션·잡화	133000
21	클린하우스 통주물 냄비 4인 가족용	cjmall	생활·주방	44000
22	여행공감 제주 3일 얼리버드 특가	hnsmall	여행·레저	324900
23	소피아나 와이드 슬랙스 2종	nsmall	패션·잡화	35000
24	쿠치나 올인원 공기청정기	lottemall	가전·디지털	840000
25	스마트온 프리미엄 전기레인지 렌탈 6년	lottemall	가전·디지털	1553000
26	엘리뉴 쿠션 파운데이션 리필 2개 추가	nsmall	화장품·미용	134900
27	클린웨이 프리미엄 식기세척기	cjmall	가전·디지털	879900
28	클린웨이 프리미엄 식기세척기 (프리미엄형)	cjmall	가전·디지털	968000
29	더마린 주름개선 세럼	lottemall	화장품·미용	159000
30	데일리홈 통주물 냄비 (SS)	hnsmall	생활·주방	52000
31	[시즌오프] 녹원 프리미엄 석류즙 4+1 구성	nsmall	식품·건강	38900
32	[1+1] 데일리홈 무선 물걸레 청소포	hnsmall	생활·주방	29900
33	[홈쇼핑단독]셀라온 마스크팩 프리미엄 라인	lottemall	화장품·미용	35900
34	건강한끼 사차인치 오일 6+1 구성	nsmall	식품·건강	33700
35	미래안심생명 시그니처 간병보험 (비갱신형)	cjmall	보험	41000
36	[20FW신상]참한우 홍삼정 6박스	hnsmall	식품·건강	44000
37	산들농장 올인원 흑마늘 진액 (3개월분)	lottemall	식품·건강	106900
38	셀라온 시그니처 주름개선 세럼 시즌6	hmall	화장품·미용	24000
39	★무이자 할부★ 하늘길투어 제주 3일 얼리버드 특가	gsshop	여행·레저	903000
40	[1+1] 라펠라인 프리미엄 플리스 자켓 스페셜 에디션	hnsmall	패션·잡화	121000
41	2020 SS 르샤뜨 구스다운 점퍼 6종 세트	gsshop	패션·잡화	112900
42	로렌제이 실크 블라우스	hnsmall	패션·잡화	38900
43	더블유진 프리미엄 기모 레깅스 한정 패키지	gsshop	패션·잡화	117900
44	[방송한정]로렌제이 뉴 레그쉐이퍼 한정 패키지	cjmall	패션·잡화	195900
45	[방송한정]로렌제이 뉴 레그쉐이퍼 6종 세트	cjmall	패션·잡화	163900
46	★역대 최저가★ 퓨어존 온열 카페트 5인용	hnsmall	가전·디지털	814900
47	2018 SS 메종드루 기모 레깅스 스페셜 에디션	nsmall	패션·잡화	63000
48	2018 SS 메종드루 기모 레깅스 여성용	nsmall	패션·잡화	58900
49	2018 SS 메종드루 기모 레깅스 3컬러 택1	nsmall	패션·잡화	56000
50	더블유진 롱베스트 남성용	hmall	패션·잡화	29900
51	더블유진 롱베스트 5컬러 택1	hmall	패션·잡화	32900
52	더블유진 롱베스트 여성용	hmall	패션·잡화	24000
53	[시즌오프] 우드앤룸 붙박이 옷장 풀세트	nsmall	가구·인테리어	286000
54	[시즌오프] 우드앤룸 붙박이 옷장 4단	nsmall	가구·인테리어	233900
55	[신상품] 클레어진 기모 레깅스	nsmall	패션·잡화	56000
56	[1+1]로렌제이 핸드메이드 하프코트 (55~88)	hnsmall	패션·잡화	142000
57	하이퀸 안마의자 6인용	nsmall	가전·디지털	286900
58	하이퀸 안마의자 (프리미엄형)	nsmall	가전·디지털	280900
59	쇼핑가이드 특집 방송	nsmall	\N	0
60	하이퀸 올인원 제습기 패키지	nsmall	가전·디지털	1458900
61	누리침구 올인원 차렵이불 5P	hnsmall	생활·주방	175900
62	누리침구 올인원 차렵이불 6종 세트	hnsmall	생활·주방	203900
63	누리침구 올인원 차렵이불 3장 세트	hnsmall	생활·주방	162900
64	[특별기획] 미래안심생명 종신보험 2.0	lottemall	보험	15000
65	[특별기획] 미래안심생명 종신보험 (갱신형)	lottemall	보험	12000
66	17년형 하우스핏 식탁 세트	nsmall	가구·인테리어	1462000
67	[역대최저가]쿡셀렉트 울트라 밀폐용기 (SS)	nsmall	생활·주방	53700
68	[역대최저가]쿡셀렉트 울트라 밀폐용기 풀세트	nsmall	생활·주방	61900
69	건강한끼 흑마늘 진액 6통	hnsmall	식품·건강	26000
70	건강한끼 흑마늘 진액 250g*6팩	hnsmall	식품·건강	20900
71	[신상품] 쿠치나 로봇청소기 점보형	nsmall	가전·디지털	338000
72	[신상품] 쿠치나 로봇청소기 풀세트	nsmall	가전·디지털	317000
73	데일리홈 칼블럭 세트	hmall	생활·주방	73000
74	데일리홈 칼블럭 세트 2장 세트	hmall	생활·주방	57900
75	자연담은 유산균 선물세트	cjmall	식품·건강	41000
76	★ 무이자 할부 ★ 라펠라인 플리스 자켓	cjmall	패션·잡화	140000
77	★사은품 2종 증정★ 해올림 석류즙	hnsmall	식품·건강	130900
78	★사은품 2종 증정★ 해올림 석류즙 (6개월분)	hnsmall	식품·건강	137900
79	[무료배송] 스윙마스터 시그니처 실내 자전거	lottemall	스포츠·레저	586000
80	[무료배송] 스윙마스터 시그니처 실내 자전거 3인용	lottemall	스포츠·레저	590900
81	홈앤쿡 스페셜 통주물 냄비	hmall	생활·주방	161900
82	오휘담 매직프레스 네일 4종 세트	hmall	화장품·미용	122900
83	쿠치나 시그니처 제습기 렌탈 3년	lottemall	가전·디지털	932000
84	2019 SS 밀라노스텝 구스다운 점퍼 시즌5	nsmall	패션·잡화	246900
85	2019 SS 밀라노스텝 구스다운 점퍼 스페셜 에디션	nsmall	패션·잡화	305900
86	해올림 손질 갈치 6+1 구성	cjmall	식품·건강	39900
87	에르반 울트라 소가죽 토트백 스페셜 에디션	hmall	패션·잡화	116000
88	★ 방송에서만 추가 증정 ★ 청정해 오메가3	cjmall	식품·건강	85400
89	라펠라인 소가죽 토트백 2피스	cjmall	패션·잡화	101900
90	★무이자 할부★ 클레어진 소가죽 토트백	hmall	패션·잡화	57900
91	★무이자 할부★ 클레어진 소가죽 토트백 한정 패키지	hmall	패션·잡화	65000
92	오휘담 바디 브러쉬 세트	nsmall	화장품·미용	103000
93	★오늘 단 하루★ 라벨르 올인원 클렌징 오일 시즌5	cjmall	화장품·미용	33900
94	★오늘 단 하루★ 라벨르 올인원 클렌징 오일 200ml x 4개	cjmall	화장품·미용	37000
95	★오늘 단 하루★ 라벨르 올인원 클렌징 오일 2종 세트	cjmall	화장품·미용	30900
96	[무료배송] 라펠라인 뉴 윈터 부츠 시즌5	cjmall	패션·잡화	48900
97	닥터셀리 마스크팩 스페셜 패키지	gsshop	화장품·미용	95900
98	닥터셀리 마스크팩 200ml x 2개	gsshop	화장품·미용	120900
99	★ 앵콜 방송 ★ 자연담은 시그니처 손질 갈치 6kg	hnsmall	식품·건강	78000
100	★ 앵콜 방송 ★ 자연담은 시그니처 손질 갈치 (3개월분)	hnsmall	식품·건강	65900
\.


--
-- Name: item_id_seq; Type: SEQUENCE SET; Schema: public; Owner: postgres
--

SELECT pg_catalog.setval('public.item_id_seq', 100, true);


--
-- Name: item item_pkey; Type: CONSTRAINT; Schema: public; Owner: postgres
--

ALTER TABLE ONLY public.item
    ADD CONSTRAINT item_pkey PRIMARY KEY (id);


--
-- PostgreSQL database dump complete
--

